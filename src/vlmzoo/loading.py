"""``vlmzoo.load``: one path from a name to a ready model object.

What a name can be is read by ``vlmzoo.names`` (API name, folder, catalog name, hub id). API
models touch neither the hub nor any weights; catalog names resolve to the hub id on their card,
then to a local mirror, the HF cache, or a download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmzoo import catalog, families, hub
from vlmzoo.engine.cpu.allocator import keep_freed_memory, release_free_memory
from vlmzoo.engine.device import pick_device, pick_dtype
from vlmzoo.engine.memory import check_fits
from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.base import VLModel
from vlmzoo.families.hf import read_config
from vlmzoo.names import ApiName, CatalogName, FolderName, read_name

if TYPE_CHECKING:
    from vlmzoo.families.api.base import APITarget


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
    what = read_name(name)
    if isinstance(what, ApiName):
        return _resolve_api(what)  # dtype and device do not apply: the provider runs the model
    device = pick_device(device)
    entry = what.entry if isinstance(what, CatalogName) else None

    def dtype_for(cls):
        preference = (entry.card.cpu_dtype if entry is not None else None) or cls.cpu_dtype
        return pick_dtype(dtype, device, preference)

    if entry is not None:
        if not families.loadable(entry.card.family):
            raise UnknownModelError(f"{name} is in the catalog (support: {entry.card.support}) but vlmzoo cannot "
                                    f"load family {entry.card.family!r} yet")
        if entry.checkpoint.from_folder:
            raise UnknownModelError(f"{entry.checkpoint.name} cannot be fetched by name: {entry.checkpoint.from_folder} "
                                    "Then load that folder: vlmzoo.load('/path/to/folder').")
        cls = families.family_class(entry.card.family)
        torch_dtype = dtype_for(cls)
        params = entry.checkpoint.params_b or entry.card.params_b
        fits = lambda: check_fits(entry.checkpoint.name, params, _name(torch_dtype), device)  # noqa: E731
        ck = entry.checkpoint
        path = hub.resolve(ck.hub_id, revision or ck.revision, models_dir, before_download=fits)
        if ck.files_from:
            path = _with_files_from(path, ck, models_dir)
    else:
        path = what.path if isinstance(what, FolderName) else hub.resolve(what.hub_id, revision, models_dir)
        cls = families.family_class(_family_of_folder(path))
        torch_dtype = dtype_for(cls)
    return Resolved(entry.checkpoint.name if entry else os.fspath(name), path, cls, torch_dtype, device, entry)


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
    check_fits(r.name, r.cls.weight_params(r.path), _name(r.dtype), r.device)
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
        keep_freed_memory()  # after the weights: activations reuse freed blocks (engine/cpu/allocator.py)
    if r.entry is not None and r.entry.checkpoint.tasks:
        # a fine-tuned checkpoint serves fewer tasks than its family (git-base-vqav2 only asks)
        model.tasks = model.tasks & frozenset(r.entry.checkpoint.tasks)
    return model


def _name(torch_dtype) -> str:
    return str(torch_dtype).removeprefix("torch.")


def _resolve_api(api: ApiName) -> Resolved:
    """An API model's identity: its family, model id and endpoint."""
    cls = families.family_class(api.family)
    return Resolved(api.name, None, cls, None, "api", api.entry, cls.target_for(api.model, api.base_url))


def _with_files_from(path: Path, ck, models_dir) -> Path:
    """The checkpoint as one folder: its files, with those its official code takes from other
    hub repos (``files_from``) in their place; links in vlmzoo's cache, nothing copied."""
    import hashlib

    from vlmzoo.cache_dir import cache_dir

    extra = {name: hub.resolve_file(repo, name, models_dir=models_dir) for name, repo in ck.files_from.items()}
    key = hashlib.sha256(repr((str(path.resolve()), sorted((n, str(p)) for n, p in extra.items()))).encode())
    root = cache_dir("checkpoints")
    if root is None:
        raise UnknownModelError(f"{ck.name} needs {', '.join(extra)} beside its weights and no cache folder can be "
                                "written to lay them out; set $XDG_CACHE_HOME to a writable folder")
    folder = root / f"{ck.name}-{key.hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p.resolve() for p in path.iterdir() if p.is_file() and p.name not in extra}
    wanted.update({name: p.resolve() for name, p in extra.items()})
    for name, target in wanted.items():
        link = folder / name
        if not (link.is_symlink() and link.resolve() == target):
            temporary = folder / f".{name}.{os.getpid()}"  # made aside, then renamed: atomic for a concurrent load
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(target)
            os.replace(temporary, link)
    return folder


def _family_of_folder(path: Path) -> str:
    by_file = families.for_weight_files(path)  # releases without a transformers config.json
    if by_file is not None:
        return by_file.name
    model_type = read_config(path).get("model_type", "")
    family = families.for_model_type(model_type)
    if family is None:
        raise UnknownModelError(
            f"{path}: model_type {model_type!r} is not one vlmzoo can load "
            f"(loadable: {', '.join(families.model_types())})"
        )
    return family.name
