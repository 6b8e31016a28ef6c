"""ImageBind's text tokenizer (CLIP's BPE as ImageBind uses it), held to the official code's ids.

tests/data/imagebind/reference.json key ``tokenizer`` holds what the official
``SimpleTokenizer`` / ``load_and_transform_text`` (ImageBind 53680b02) gave for 13 strings: the 77
model ids, the raw BPE ids, the pooled EOT position and the decode of the raw ids. vlmzoo's
tokenizer must give the same, exactly, from the vocabulary file beside the tiny checkpoint and
from the same merges in Hugging Face's merges.txt layout.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from vlmzoo.errors import MissingDependencyError, UnknownModelError
from vlmzoo.families.imagebind.tokenizer import ClipBPE, find_vocab

DATA = Path(__file__).parent / "data" / "imagebind"
CHECKPOINT = DATA / "checkpoint"
REFERENCE = json.loads((DATA / "reference.json").read_text(encoding="utf-8"))["tokenizer"]
TABLE = REFERENCE["table"]
ROWS = pytest.mark.parametrize("row", TABLE, ids=[f"row{i}" for i in range(len(TABLE))])


@pytest.fixture(scope="module")
def tok():
    return ClipBPE(find_vocab(CHECKPOINT))


def test_vocabulary_file_is_clips():
    gz = CHECKPOINT / "bpe_simple_vocab_16e6.txt.gz"
    assert find_vocab(CHECKPOINT) == gz
    data = gz.read_bytes()
    assert len(data) == 1_356_917
    assert hashlib.sha256(data).hexdigest() == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"


def test_vocabulary_facts(tok):
    assert len(TABLE) == 13
    assert (tok.vocab_size, tok.sot_id, tok.eot_id) == (49408, 49406, 49407)
    assert (REFERENCE["vocab_size"], REFERENCE["sot_id"], REFERENCE["eot_id"]) == (49408, 49406, 49407)
    assert len(tok._ranks) == REFERENCE["n_merges"] == 48894
    assert tok.context_length == 77


@ROWS
def test_row(tok, row):
    ids = tok([row["text"]])
    assert ids.dtype == torch.int64 and ids.shape == (1, 77)
    assert ids[0].tolist() == row["ids"]
    assert tok.encode(row["text"]) == row["encode"]
    assert len(row["encode"]) == row["n_encoded"]
    assert int(ids[0].argmax()) == row["eot_position"]
    assert tok.decode(row["encode"]) == row["decode_of_encode"]


def test_batch_and_truncation(tok):
    batch = tok([row["text"] for row in TABLE])
    assert batch.shape == (13, 77)
    assert batch.tolist() == [row["ids"] for row in TABLE]
    assert batch.argmax(dim=-1).tolist() == [row["eot_position"] for row in TABLE]

    long = next(row for row in TABLE if row["truncated"])
    assert long["n_encoded"] == 88
    ids = batch[TABLE.index(long)].tolist()
    # [SOT] + the first 75 BPE ids + [EOT]; the tokenizer before 1125e1e kept 76 ids and no EOT
    assert ids == [49406] + long["encode"][:75] + [49407]
    assert ids[:76] == long["ids_before_1125e1e"][:76] and ids[76] != long["ids_before_1125e1e"][76]
    assert long["argmax_before_1125e1e"] == 0 and long["eot_position"] == 76


def test_hugging_face_merges_txt(tmp_path, tok):
    lines = gzip.decompress((CHECKPOINT / "bpe_simple_vocab_16e6.txt.gz").read_bytes()).decode("utf-8").split("\n")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines[1:48895]) + "\n", encoding="utf-8")
    assert find_vocab(tmp_path) == tmp_path / "merges.txt"
    hf = ClipBPE(tmp_path)  # a folder: the vocabulary is looked up in it
    assert (hf.vocab_size, hf.sot_id, hf.eot_id) == (49408, 49406, 49407)
    texts = [row["text"] for row in TABLE]
    assert hf(texts).tolist() == [row["ids"] for row in TABLE]
    assert torch.equal(hf(texts), tok(texts))


def test_missing_vocabulary_names_the_folder(tmp_path):
    folder = tmp_path / "imagebind_ckpt"
    folder.mkdir()
    (folder / "imagebind_huge.pth").write_bytes(b"")
    for call in (lambda: find_vocab(folder), lambda: ClipBPE(folder)):
        with pytest.raises(UnknownModelError) as info:
            call()
        message = str(info.value)
        assert str(folder) in message
        assert "bpe_simple_vocab_16e6.txt.gz" in message and "merges.txt" in message


def test_missing_ftfy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ftfy", None)  # import ftfy now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'vlmzoo\[imagebind\]'"):
        ClipBPE(CHECKPOINT)
