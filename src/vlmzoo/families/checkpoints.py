"""Loading an official checkpoint into modules vlmzoo owns, through one table of tensor names.

For the families that implement a model themselves (families/<name>/modeling.py): the
checkpoint's safetensors files, as published (one file, or shards listed in
``model.safetensors.index.json``), are read tensor by tensor; each official name is renamed by
the family's table (``convert.py``: ordered (pattern, replacement) regex rules, the first
match wins); and the result must fill the modules exactly: a tensor no rule maps, a module
tensor nothing fills, and a shape that differs are each an error naming the tensors, never a
warning. The modules are built on the meta device first, so weights are held once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vlmzoo.errors import UnknownModelError

INDEX = "model.safetensors.index.json"


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's safetensors files: the index's shards, else every *.safetensors."""
    folder = Path(folder)
    index = folder / INDEX
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as e:
            raise UnknownModelError(f"{index}: not a safetensors index ({e})") from None
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise UnknownModelError(f"{folder}: shard(s) {', '.join(missing)} listed in {INDEX} are missing")
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UnknownModelError(f"{folder}: no .safetensors weights; vlmzoo does not load pickled (.bin/.pt) weights")
    return files


def rename(name: str, table: list[tuple[str, str]]) -> str | None:
    """``name`` through the first rule whose pattern matches it whole; None if none does."""
    for pattern, replacement in table:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    return None


def load_official(module, folder: Path, table: list[tuple[str, str]], *, device: str, dtype):
    """``module`` (built on the meta device) with the checkpoint's tensors, on ``device`` in
    ``dtype`` and in eval mode."""
    from safetensors import safe_open

    from vlmzoo.engine.memory import read_safetensors_header

    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    state, unmapped, wrong = {}, [], []
    for file in weight_files(folder):
        read_safetensors_header(file)  # a damaged file is named, not a traceback
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                target = rename(name, table)
                if target is None or target not in expected:
                    unmapped.append(f"{name} (-> {target})" if target else name)
                    continue
                tensor = f.get_tensor(name)
                if tuple(tensor.shape) != expected[target]:
                    wrong.append(f"{name}: {tuple(tensor.shape)}, the model wants {expected[target]}")
                    continue
                state[target] = tensor.to(device=device, dtype=dtype)
    missing = sorted(set(expected) - set(state))
    problems = [(unmapped, "tensor(s) no rule maps to the model"), (wrong, "tensor(s) of the wrong shape"),
                (missing, "model tensor(s) the checkpoint does not hold")]
    found = [f"{len(items)} {what}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
             for items, what in problems if items]
    if found:
        raise UnknownModelError(f"{folder}: the checkpoint does not match the model; " + "; ".join(found))
    module.load_state_dict(state, strict=True, assign=True)
    return module.to(device=device, dtype=dtype).eval()
