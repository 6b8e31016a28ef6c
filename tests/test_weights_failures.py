"""A checkpoint whose weights file is damaged (garbage, truncated, empty) or cannot be read (no
permission, a broken link, a folder in its place) gives one line naming the file, both from the
memory estimate that reads safetensors headers before loading and from the load itself."""

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

import vlmzoo
from unprivileged import as_unprivileged, can, give_to_unprivileged, shared_dir
from vlmzoo.cli import main
from vlmzoo.engine.memory import params_from_weights
from vlmzoo.errors import UnknownModelError


def _header(path: Path) -> tuple[int, bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return n, data


def _garbage(f: Path):
    f.write_bytes(os.urandom(4096))  # its first 8 bytes claim a header of some petabytes


def _empty(f: Path):
    f.write_bytes(b"")


def _cut_in_the_length(f: Path):
    f.write_bytes(f.read_bytes()[:5])


def _cut_in_the_header(f: Path):
    n, data = _header(f)
    f.write_bytes(data[:8 + n // 2])


def _cut_in_the_tensors(f: Path):
    n, data = _header(f)
    f.write_bytes(data[:8 + n + (len(data) - 8 - n) // 2])


def _header_not_json(f: Path):
    n, data = _header(f)
    f.write_bytes(data[:8] + b"\x00" * n + data[8 + n:])


def _header_not_tensors(f: Path):
    body = json.dumps({"w": {"dtype": "F32", "shape": "big", "data_offsets": [0, 4]}}).encode()
    f.write_bytes(struct.pack("<Q", len(body)) + body + b"\x00" * 4)


def _broken_link(f: Path):
    f.unlink()
    f.symlink_to(f.parent / "blobs-gone" / "0123abcd")  # a hub snapshot whose blob was deleted


def _a_folder(f: Path):
    f.unlink()
    f.mkdir()


DAMAGE = {"garbage": _garbage, "empty": _empty, "cut in the length": _cut_in_the_length,
          "cut in the header": _cut_in_the_header, "cut in the tensors": _cut_in_the_tensors,
          "header not JSON": _header_not_json, "header not tensors": _header_not_tensors,
          "broken link": _broken_link, "a folder": _a_folder}


@pytest.fixture
def damaged(tiny, tmp_path, request):
    folder = tmp_path / "clip"
    shutil.copytree(tiny["clip"], folder)
    DAMAGE[request.param](folder / "model.safetensors")
    return folder


def _one_line_naming(error: Exception, file: Path) -> str:
    text = str(error)
    assert isinstance(error, UnknownModelError), repr(error)
    assert "\n" not in text and str(file) in text, text
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return text


def _load_directly(folder: Path):
    """The load in families/hf.py alone, without the memory estimate in front of it."""
    import transformers

    from vlmzoo.families.hf import load_model

    return load_model(transformers.CLIPModel, folder, device="cpu", dtype=None)


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_damaged_weights_are_named_by_the_estimate_and_the_load(damaged, monkeypatch):
    weights = damaged / "model.safetensors"
    with pytest.raises(UnknownModelError) as caught:
        params_from_weights(damaged)
    _one_line_naming(caught.value, weights)
    with pytest.raises(UnknownModelError) as caught:
        _load_directly(damaged)
    _one_line_naming(caught.value, weights)
    monkeypatch.setenv("VLMZOO_SKIP_MEMORY_CHECK", "1")
    with pytest.raises(UnknownModelError) as caught:
        vlmzoo.load(damaged)
    _one_line_naming(caught.value, weights)


@pytest.mark.parametrize("damaged", ["garbage"], indirect=True)
def test_the_cli_says_it_in_one_line(damaged, tmp_path):
    res = CliRunner().invoke(main, ["eval", "--models", str(damaged), "--benchmark", "sample-classify",
                                    "--limit", "1", "--store", str(tmp_path / "r.db")])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and str(damaged / "model.safetensors") in lines[0], res.output


def test_unreadable_weights_are_named(tiny):
    """No read permission (as root, the check runs as nobody: see unprivileged.py)."""
    with shared_dir() as root:
        folder = root / "clip"
        shutil.copytree(tiny["clip"], folder)
        for p in (folder, *folder.iterdir()):
            p.chmod(0o755 if p.is_dir() else 0o644)
            give_to_unprivileged(p)
        weights = folder / "model.safetensors"
        weights.chmod(0o000)
        with as_unprivileged():
            assert not can(weights, os.R_OK)  # the premise: this process really cannot read it
            for attempt in (lambda: params_from_weights(folder), lambda: _load_directly(folder)):
                with pytest.raises(UnknownModelError) as caught:
                    attempt()
                assert "permission" in _one_line_naming(caught.value, weights).lower()


def test_good_weights_still_load_and_count(tiny):
    import torch

    params = params_from_weights(tiny["clip"])
    model = _load_directly(tiny["clip"])
    assert params * 1e9 == pytest.approx(sum(t.numel() for t in model.state_dict().values()), rel=0.05)
    assert next(model.parameters()).dtype == torch.float32


def test_damage_only_safetensors_itself_sees_is_named_too(tiny, tmp_path):
    """Two tensors over the same bytes: sizes and coverage add up (the header check passes), but
    safetensors refuses the file when loading; that refusal is one line naming the checkpoint."""
    folder = tmp_path / "clip"
    shutil.copytree(tiny["clip"], folder)
    weights = folder / "model.safetensors"
    n, data = _header(weights)
    header = json.loads(data[8:8 + n])
    by_width: dict[int, list[str]] = {}
    for k, meta in header.items():
        if k != "__metadata__":
            by_width.setdefault(meta["data_offsets"][1] - meta["data_offsets"][0], []).append(k)
    first, second = next(names for names in by_width.values() if len(names) > 1)[:2]  # two biases, say
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    if second == last:
        first, second = second, first  # keep the last tensor where it is: the file stays fully covered
    header[second] = {**header[second], "data_offsets": header[first]["data_offsets"]}
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    rest = data[8 + n:]
    weights.write_bytes(struct.pack("<Q", len(body)) + body + rest)
    assert params_from_weights(folder) > 0  # the estimate has what it needs
    with pytest.raises(UnknownModelError) as caught:
        _load_directly(folder)
    assert "\n" not in str(caught.value) and str(folder) in str(caught.value) and "damaged" in str(caught.value)
