"""Official weights published only as a pickle (.pth / .pt / .bin): read once, safely, kept as safetensors.

A pickle can carry code that runs when it is read. vlmzoo reads one only through
``torch.load(weights_only=True)``, whose unpickler builds tensors and plain containers and
refuses anything else (a class to import, a function to call) before running it. The tensors
are then written once to vlmzoo's cache as ``model.safetensors`` (atomically: a half-written
file is never visible), and every later load reads that, through the same checked path as a
published safetensors checkpoint (checkpoints.load_official).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path

from vlmzoo.errors import UnknownModelError

CONVERTED = "model.safetensors"
WRAPPERS = ("model", "state_dict", "module")  # training scripts' {"model": state_dict, ...}


def converted(file: Path, *, wrapper: str | None = None) -> Path:
    """The folder in vlmzoo's cache holding ``file``'s tensors as safetensors, converting on the
    first call. ``wrapper``: the key holding the state dict when the pickle wraps one."""
    from vlmzoo.cache_dir import cache_dir

    file = Path(file).resolve()
    if not file.is_file():
        raise UnknownModelError(f"{file}: no such weights file")
    st = file.stat()
    # identity of this very file without reading 5 GB each time: where it is, its size, its mtime
    key = hashlib.sha256(f"{file}|{st.st_size}|{st.st_mtime_ns}|{wrapper}".encode()).hexdigest()[:16]
    root = cache_dir("converted")
    if root is None:
        raise UnknownModelError(f"{file}: pickled weights are converted to safetensors once, in vlmzoo's cache, "
                                "and no cache folder can be written; set $XDG_CACHE_HOME to a writable folder")
    folder = root / f"{file.stem}-{key}"
    if (folder / CONVERTED).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    state = read_pickle(file, wrapper)
    write_safetensors(state, folder / CONVERTED, source=file)
    return folder


def folder_weights(folder: Path, what: str = "the folder") -> Path:
    """A transformers-format folder's weights as safetensors: the folder itself when it holds
    them, else its pickled ``pytorch_model.bin`` (or the shards ``pytorch_model.bin.index.json``
    lists), each converted once and the shards linked side by side in vlmzoo's cache.
    ``what`` names the folder in errors."""
    from vlmzoo.cache_dir import cache_dir
    from vlmzoo.families.checkpoints import INDEX

    folder = Path(folder)
    if any(folder.glob("*.safetensors")) or (folder / INDEX).is_file():
        return folder
    index = folder / "pytorch_model.bin.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as e:
            raise UnknownModelError(f"{index}: not a weights index ({e})") from None
    elif (folder / "pytorch_model.bin").is_file():
        shards = ["pytorch_model.bin"]
    else:
        raise UnknownModelError(f"{folder}: {what} has no weights (*.safetensors or pytorch_model*.bin)")
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise UnknownModelError(f"{folder}: shard(s) {', '.join(missing)} listed in {index.name} are missing")
    files = [converted(folder / s) / CONVERTED for s in shards]
    if len(files) == 1:
        return files[0].parent
    root = cache_dir("converted")
    key = hashlib.sha256("|".join(map(str, files)).encode()).hexdigest()[:16]
    linked = root / f"{folder.name}-shards-{key}"
    linked.mkdir(parents=True, exist_ok=True)
    for i, target in enumerate(files):
        link = linked / f"shard-{i:05d}.safetensors"
        if not (link.is_symlink() and link.resolve() == target.resolve()):
            temporary = linked / f".{link.name}.{os.getpid()}"  # made aside, then renamed
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(target)
            os.replace(temporary, link)
    return linked


def parameter_count(file: Path, wrapper: str | None = None) -> int:
    """Values in a pickled state dict, counted from its tensors' shapes: the zip format is
    memory-mapped, so no tensor data is read (the same weights_only refusal applies)."""
    return sum(t.numel() for t in read_pickle(Path(file), wrapper).values())


def read_pickle(file: Path, wrapper: str | None = None) -> dict:
    """The tensors of a pickled state dict, read with ``torch.load(weights_only=True)`` only."""
    import torch

    try:
        try:
            obj = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(file, map_location="cpu", weights_only=True)  # the legacy (pre-zip) format
    except pickle.UnpicklingError as e:
        what = str(e).strip().splitlines()
        detail = next((line for line in what if "GLOBAL" in line or "Unsupported" in line), what[0] if what else "")
        raise UnknownModelError(f"{file}: refused: the pickle holds more than tensors ({detail.strip()}); vlmzoo "
                                "reads pickled weights only with torch.load(weights_only=True), which runs no code") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise UnknownModelError(f"{file}: not a readable PyTorch weights file ({type(e).__name__}: {e})") from None
    if wrapper is not None or (isinstance(obj, dict) and not _all_tensors(obj)):
        keys = [wrapper] if wrapper else [k for k in WRAPPERS if isinstance(obj, dict) and k in obj]
        if not keys or not isinstance(obj, dict) or keys[0] not in obj:
            raise UnknownModelError(f"{file}: not a state dict of tensors (top-level keys: "
                                    f"{', '.join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__})")
        obj = obj[keys[0]]
    if not isinstance(obj, dict) or not obj or not _all_tensors(obj):
        raise UnknownModelError(f"{file}: not a state dict of tensors")
    return obj


def _all_tensors(d: dict) -> bool:
    import torch

    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def write_safetensors(state: dict, target: Path, *, source: Path) -> None:
    """``state`` as one safetensors file at ``target``, made aside and renamed into place."""
    from safetensors.torch import save_file

    seen, tensors = set(), {}
    for name, t in state.items():
        # tensors sharing storage (tied weights) are written as copies: safetensors refuses aliases
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        tensors[name] = t.contiguous() if ptr not in seen else t.clone().contiguous()
        if ptr is not None:
            seen.add(ptr)
    temporary = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        save_file(tensors, str(temporary), metadata={"format": "pt", "converted_from": json.dumps(str(source))})
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
