"""``vlmzoo.load``: one path from a name to a ready model object.

A name is, in this order: an API model (``openai:<model>``, ``gemini:<model>``,
``openai-compatible:<base-url>#<model>``, or a catalog name of one), which touches neither the
hub nor any weights; a local checkpoint folder; a catalog id, alias or checkpoint name; a
Hugging Face hub id (``org/name``, optionally ``hf-hub:org/name``). Catalog names resolve to the
hub id on their card, then to a local mirror, the HF cache, or a download.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmzoo import catalog, hub
from vlmzoo.engine.allocator import keep_freed_memory, release_free_memory
from vlmzoo.engine.device import pick_device, pick_dtype
from vlmzoo.engine.memory import check_fits, params_from_weights
from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families import FAMILIES, MODEL_TYPES, family_class
from vlmzoo.families.base import VLModel
from vlmzoo.families.hf import read_config

if TYPE_CHECKING:
    from vlmzoo.families.api import APITarget

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class Resolved:
    """Where a name leads, before any weights are read: enough to identify a run's model."""

    name: str  # what the model is called in results (the checkpoint name for catalog entries)
    path: Path | None  # None for API models
    cls: type
    dtype: object  # torch.dtype; None for API models
    device: str  # "api" for API models
    entry: "catalog.Entry | None"
    api: "APITarget | None" = None  # the provider, model id and base URL of an API model


def resolve(
    name: str | os.PathLike,
    *,
    device: str | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    models_dir: str | os.PathLike | None = None,
) -> Resolved:
    """Resolve ``name`` to a checkpoint folder, family and dtype (downloading if needed, never loading)."""
    if not isinstance(name, (str, os.PathLike)):
        raise UnknownModelError(f"model name must be a string or path, got {type(name).__name__}")
    name = os.fspath(name)
    if not name.strip():
        raise UnknownModelError("model name is empty")
    api = _resolve_api(name)
    if api is not None:
        return api  # dtype and device do not apply: the provider runs the model
    device = pick_device(device)
    folder = Path(name).expanduser()
    entry = None if folder.is_dir() else _catalog_entry(name)

    def dtype_for(cls):
        preference = (entry.card.cpu_dtype if entry is not None else None) or cls.cpu_dtype
        return pick_dtype(dtype, device, preference)

    if entry is not None:
        cls = family_class(entry.card.family)
        torch_dtype = dtype_for(cls)
        params = entry.checkpoint.params_b or entry.card.params_b
        fits = lambda: check_fits(entry.checkpoint.name, params, _name(torch_dtype), device)  # noqa: E731
        path = hub.resolve(entry.checkpoint.hub_id, revision, models_dir, before_download=fits)
    else:
        path = _uncatalogued(name, folder, revision, models_dir)
        cls = family_class(_family_of_folder(path))
        torch_dtype = dtype_for(cls)
    return Resolved(entry.checkpoint.name if entry else name, path, cls, torch_dtype, device, entry)


def load(
    name: str | os.PathLike,
    *,
    device: str | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    allow_urls: bool = False,
    max_pixels: int | None = None,
    models_dir: str | os.PathLike | None = None,
    **api_options,
) -> VLModel:
    """Load a model by catalog id, hub id or folder. See the module docstring for the order.

    ``device`` defaults to CUDA if present, else CPU. ``dtype`` defaults on CPU to float32
    (exact parity), or bfloat16 for families shown to keep their outputs in it, on CPUs that
    compute bf16 natively. ``allow_urls`` lets task methods fetch http(s) images;
    ``max_pixels`` caps image size at intake. API models take ``api_options`` such as
    ``max_concurrency``, ``timeout``, ``max_retries`` (see docs/api-models.md).
    """
    return load_resolved(resolve(name, device=device, dtype=dtype, revision=revision, models_dir=models_dir),
                         allow_urls=allow_urls, max_pixels=max_pixels, **api_options)


def load_resolved(r: Resolved, *, allow_urls: bool = False, max_pixels: int | None = None, **api_options) -> VLModel:
    if r.api is not None:
        return r.cls(target=r.api, name=r.name, card=r.entry.card if r.entry else None,
                     checkpoint=r.entry.checkpoint if r.entry else None, allow_urls=allow_urls,
                     max_pixels=max_pixels, **api_options)
    if api_options:
        raise InputError(f"{r.name} is a local model; {', '.join(sorted(api_options))} apply to API models only")
    release_free_memory()  # memory an earlier model left for reuse counts as available again
    # before loading, from the weight files' headers: the truth for whatever is on disk
    check_fits(r.name, params_from_weights(r.path), _name(r.dtype), r.device)
    model = r.cls.from_pretrained(
        r.path,
        name=r.name,
        card=r.entry.card if r.entry else None,
        checkpoint=r.entry.checkpoint if r.entry else None,
        device=r.device,
        dtype=r.dtype,
        allow_urls=allow_urls,
        max_pixels=max_pixels,
    )
    if str(r.device).startswith("cpu"):
        keep_freed_memory()  # after the weights: activations reuse freed blocks (engine/allocator.py)
    if r.entry is not None and r.entry.checkpoint.tasks:
        # a fine-tuned checkpoint serves fewer tasks than its family (git-base-vqav2 only asks)
        model.tasks = model.tasks & frozenset(r.entry.checkpoint.tasks)
    return model


def _name(torch_dtype) -> str:
    return str(torch_dtype).removeprefix("torch.")


def _resolve_api(name: str) -> Resolved | None:
    """An API model's identity from its name or catalog entry; None for any other name."""
    from vlmzoo.families.api import API_PREFIXES, parse_api_name

    parsed = parse_api_name(name)
    entry = catalog.find(name)
    if parsed is None:
        if entry is None or entry.card.access != "api" or Path(name).expanduser().is_dir():
            return None
        parsed = parse_api_name(entry.checkpoint.name)  # an alias such as "gpt4o"
    elif entry is not None:
        parsed = parse_api_name(entry.checkpoint.name)  # the catalog's spelling of the model id
    provider, model, base_url = parsed
    cls = family_class(API_PREFIXES[provider])
    return Resolved(entry.checkpoint.name if entry else name, None, cls, None, "api", entry,
                    cls.target_for(model, base_url))


def _catalog_entry(name: str) -> "catalog.Entry | None":
    """The catalog entry ``name`` picks, if any; families not yet built are refused."""
    entry = catalog.find(name.removeprefix("hf-hub:"))
    if entry is None:
        return None
    if FAMILIES.get(entry.card.family) is None:
        raise UnknownModelError(
            f"{name} is in the catalog (support: {entry.card.support}) but vlmzoo cannot load "
            f"family {entry.card.family!r} yet"
        )
    return entry


def _uncatalogued(name: str, folder: Path, revision, models_dir) -> Path:
    """A checkpoint folder, or a hub id the catalog does not know."""
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise UnknownModelError(f"{name}: folder is not a checkpoint (no config.json)")
        return folder
    hub_name = name.removeprefix("hf-hub:")
    if _HUB_ID.match(hub_name):
        return hub.resolve(hub_name, revision, models_dir)
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
