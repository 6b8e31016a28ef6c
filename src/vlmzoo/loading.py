"""``vlmzoo.load``: one path from a name to a ready model object.

A name is, in this order: a local checkpoint folder; a catalog id, alias or checkpoint name; a
Hugging Face hub id (``org/name``, optionally ``hf-hub:org/name``). Catalog names resolve to the
hub id on their card, then to a local mirror, the HF cache, or a download.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vlmzoo import catalog, hub
from vlmzoo.engine.device import pick_device, pick_dtype
from vlmzoo.engine.memory import check_fits, params_from_weights
from vlmzoo.errors import UnknownModelError
from vlmzoo.families import FAMILIES, MODEL_TYPES, family_class
from vlmzoo.families.base import VLModel
from vlmzoo.families.hf import read_config

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def load(
    name: str | os.PathLike,
    *,
    device: str | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    allow_urls: bool = False,
    max_pixels: int | None = None,
    models_dir: str | os.PathLike | None = None,
) -> VLModel:
    """Load a model by catalog id, hub id or folder. See the module docstring for the order.

    ``device`` defaults to CUDA if present, else CPU; ``dtype`` to float32 on CPU.
    ``allow_urls`` lets task methods fetch http(s) images; ``max_pixels`` caps image size.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise UnknownModelError(f"model name must be a string or path, got {type(name).__name__}")
    name = os.fspath(name)
    if not name.strip():
        raise UnknownModelError("model name is empty")
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    dtype_name = str(torch_dtype).removeprefix("torch.")
    path, entry = _locate(name, revision, models_dir, dtype_name, device)
    family = entry.card.family if entry else _family_of_folder(path)
    cls = family_class(family)
    shown = entry.checkpoint.name if entry else name
    # before loading, from the weight files' headers: the truth for whatever is on disk
    check_fits(shown, params_from_weights(path), dtype_name, device)
    model = cls.from_pretrained(
        path,
        name=shown,
        card=entry.card if entry else None,
        checkpoint=entry.checkpoint if entry else None,
        device=device,
        dtype=torch_dtype,
        allow_urls=allow_urls,
        max_pixels=max_pixels,
    )
    if entry is not None and entry.checkpoint.tasks:
        # a fine-tuned checkpoint serves fewer tasks than its family (git-base-vqav2 only asks)
        model.tasks = model.tasks & frozenset(entry.checkpoint.tasks)
    return model


def _locate(name: str, revision, models_dir, dtype_name: str, device: str) -> tuple[Path, "catalog.Entry | None"]:
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UnknownModelError(f"{name}: folder is not a checkpoint (no config.json)")
        return local, catalog.find(name)  # a folder has no card unless the caller names one
    hub_name = name[len("hf-hub:"):] if name.startswith("hf-hub:") else name
    entry = catalog.find(hub_name)
    if entry is not None:
        if entry.card.access == "api":
            raise UnknownModelError(f"{name} is an API model; API models come in a later vlmzoo release")
        if FAMILIES.get(entry.card.family) is None:
            raise UnknownModelError(
                f"{name} is in the catalog (support: {entry.card.support}) but vlmzoo cannot load "
                f"family {entry.card.family!r} yet"
            )
        params = entry.checkpoint.params_b or entry.card.params_b
        fits = lambda: check_fits(entry.checkpoint.name, params, dtype_name, device)  # noqa: E731
        return hub.resolve(entry.checkpoint.hub_id, revision, models_dir, before_download=fits), entry
    if _HUB_ID.match(hub_name):
        return hub.resolve(hub_name, revision, models_dir), None
    raise UnknownModelError(f"unknown model {name!r}: not a folder, catalog name or hub id." + catalog.suggestion(name))


def _family_of_folder(path: Path) -> str:
    model_type = read_config(path).get("model_type", "")
    family = MODEL_TYPES.get(model_type)
    if family is None:
        raise UnknownModelError(
            f"{path}: model_type {model_type!r} is not one vlmzoo can load "
            f"(loadable: {', '.join(sorted(MODEL_TYPES))})"
        )
    return family
