"""ImageBind's text tokenizer: CLIP's byte-level BPE, as ImageBind's ``load_and_transform_text``
feeds it to the model.

The behaviour (held to the official code's ids in tests/data/imagebind/reference.json):

- clean-up: ``ftfy.fix_text``, ``html.unescape`` twice, strip, whitespace runs -> one space,
  lower-case;
- split into words with CLIP's pattern (``regex`` package, IGNORECASE): the two literal special
  tokens, the English contractions, letter runs, **single** digits, and runs of anything else
  that is not whitespace;
- each word's UTF-8 bytes become printable characters (one per byte), the last one marked with
  ``</w>``, and are merged pair by pair, lowest merge rank first;
- the model input is ``[SOT] + ids`` cut to 76 tokens, then ``[EOT]``, zero-padded to 77. The EOT
  is always there (ImageBind commit 1125e1e; before it a long text kept 77 tokens and no EOT).

The vocabulary is CLIP's merge list: ImageBind's ``bpe_simple_vocab_16e6.txt.gz`` (line 0 a
header, merges from line 1), or a Hugging Face CLIP tokenizer's ``merges.txt`` (line 0
``#version: 0.2``, then the same merges). Only the first 48894 merges are used, so the ids are
the 256 byte symbols, their 256 ``</w>`` forms, one per merge, then SOT and EOT: 49408 in all.
"""

from __future__ import annotations

import gzip
import html
import itertools
from pathlib import Path

from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.extras import require

GZ_NAME = "bpe_simple_vocab_16e6.txt.gz"  # ImageBind's (and CLIP's, open_clip's) file name
MERGES_NAME = "merges.txt"  # Hugging Face CLIP tokenizer layout
VOCAB_FILES = (GZ_NAME, MERGES_NAME)  # looked for in this order

N_MERGES = 48894  # 49152 - 256 - 2: the merges CLIP's vocabulary uses of the 262144 in the file
CONTEXT_LENGTH = 77
SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
END_OF_WORD = "</w>"

WORD_PATTERN = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"
                r"|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")

CACHE_LIMIT = 100_000  # words remembered before the BPE cache starts over


def find_vocab(folder: Path) -> Path:
    """The BPE vocabulary in a checkpoint folder: ImageBind's .gz, else a Hugging Face merges.txt."""
    folder = Path(folder)
    for name in VOCAB_FILES:
        if (folder / name).is_file():
            return folder / name
    raise UnknownModelError(
        f"{folder}: no BPE vocabulary; looked for {' and '.join(VOCAB_FILES)}. ImageBind's text "
        f"tokenizer needs CLIP's {GZ_NAME} (in the ImageBind repository at imagebind/bpe/, and in "
        f"the open_clip_torch wheel at open_clip/) or a CLIP tokenizer's {MERGES_NAME}: copy one in")


def byte_symbols() -> list[str]:
    """One printable character per byte value, indexed by the byte: printable Latin-1 bytes stand
    for themselves, the others (controls, space, soft hyphen) for chr(256), chr(257), ... in order."""
    symbols = []
    shifted = 0
    for b in range(256):
        if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def read_merges(path: Path) -> list[tuple[str, str]]:
    """The first N_MERGES merge pairs of a .gz merge list or a merges.txt (line 0 is a header)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        lines = raw.decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise UnknownModelError(f"{path}: cannot read the BPE vocabulary: {e}") from None
    merges = []
    for number, line in enumerate(lines[1:N_MERGES + 1], start=1):
        pair = line.split()
        if not pair:
            break  # a merges.txt ends with a newline
        if len(pair) != 2:
            raise UnknownModelError(f"{path}: line {number + 1} is not a BPE merge (two symbols): {line!r}")
        merges.append((pair[0], pair[1]))
    if not merges:
        raise UnknownModelError(f"{path}: no BPE merges after the header line")
    return merges


class ClipBPE:
    """CLIP's byte-level BPE tokenizer, with ImageBind's text clean-up and 77-token layout.

    ``path``: the .gz merge list or a merges.txt, or a checkpoint folder holding one
    (see ``find_vocab``).
    """

    def __init__(self, path: Path, context_length: int = CONTEXT_LENGTH):
        self._ftfy = require("ftfy", "imagebind", "ImageBind's text tokenizer")
        self._regex = require("regex", "imagebind", "ImageBind's text tokenizer")
        path = Path(path)
        self.path = find_vocab(path) if path.is_dir() else path
        if not self.path.is_file():
            raise UnknownModelError(f"{self.path}: no such BPE vocabulary file")
        self.context_length = context_length
        merges = read_merges(self.path)

        by_byte = byte_symbols()
        self._symbol_of_byte = by_byte
        self._byte_of_symbol = {s: b for b, s in enumerate(by_byte)}
        printable_first = sorted(range(256), key=lambda b: ord(by_byte[b]) >= 256)  # stable: keeps byte order
        singles = [by_byte[b] for b in printable_first]
        tokens = singles + [s + END_OF_WORD for s in singles] + [a + b for a, b in merges] + [SOT, EOT]
        self._ids: dict[str, int] = {}
        for i, token in enumerate(tokens):
            self._ids[token] = i  # a repeated token keeps its last id
        self._tokens = {i: t for t, i in self._ids.items()}
        self._ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.vocab_size = len(tokens)
        self.sot_id = self._ids[SOT]
        self.eot_id = self._ids[EOT]
        self._specials = {SOT: self.sot_id, EOT: self.eot_id}
        self._words = self._regex.compile(WORD_PATTERN, self._regex.IGNORECASE)
        self._spaces = self._regex.compile(r"\s+")
        self._cache: dict[str, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        return f"ClipBPE({str(self.path)!r}, vocab_size={self.vocab_size})"

    # -- text -> ids ----------------------------------------------------------------------------

    def clean(self, text: str) -> str:
        """The text as the BPE sees it: mojibake and HTML entities fixed, whitespace collapsed,
        lower-case."""
        text = html.unescape(html.unescape(self._ftfy.fix_text(text))).strip()
        return self._spaces.sub(" ", text).strip().lower()

    def encode(self, text: str) -> list[int]:
        """The raw BPE ids of ``text``, without SOT / EOT and uncut."""
        if not isinstance(text, str):
            raise InputError(f"text must be a string, got {type(text).__name__}")
        ids: list[int] = []
        for word in self._words.findall(self.clean(text)):
            special = self._specials.get(word)
            if special is not None:
                ids.append(special)
            else:
                ids.extend(self._word_ids(word))
        return ids

    def _word_ids(self, word: str) -> tuple[int, ...]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        symbols = [self._symbol_of_byte[b] for b in word.encode("utf-8")]
        symbols[-1] += END_OF_WORD
        ids = tuple(self._ids[s] for s in self._merge(symbols))
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def _merge(self, parts: list[str]) -> list[str]:
        """Apply the merges, the lowest-ranked adjacent pair first; each round joins every
        occurrence of that pair, scanning left to right."""
        ranks = self._ranks
        while len(parts) > 1:
            best = None
            for pair in itertools.pairwise(parts):
                rank = ranks.get(pair)
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, pair)
            if best is None:
                break
            first, second = best[1]
            joined = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    joined.append(first + second)
                    i += 2
                else:
                    joined.append(parts[i])
                    i += 1
            parts = joined
        return parts

    def __call__(self, texts: list[str] | str):
        """The model's input: a (N, context_length) int64 tensor, row i = [SOT] + encode(texts[i])
        cut to context_length - 1, then [EOT], then zeros. A single string counts as a list of one."""
        import torch

        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)):
            raise InputError(f"texts must be a list of strings, got {type(texts).__name__}")
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = ([self.sot_id] + self.encode(text))[:self.context_length - 1] + [self.eot_id]
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    # -- ids -> text ----------------------------------------------------------------------------

    def decode(self, ids) -> str:
        """The text of BPE ids: word ends become spaces, broken UTF-8 becomes U+FFFD."""
        try:
            symbols = "".join(self._tokens[int(i)] for i in ids)
        except KeyError as e:
            raise InputError(f"token id {e.args[0]} is not in the vocabulary (0..{self.vocab_size - 1})") from None
        data = bytes(self._byte_of_symbol[c] for c in symbols)
        return data.decode("utf-8", errors="replace").replace(END_OF_WORD, " ")
