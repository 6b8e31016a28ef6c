"""Family registry: family name -> lazy ``"module:Class"`` path, or None while not yet built.

Importing this module imports no model code; a family's module is imported only when a model
of that family is loaded (the vLLM-style lazy map). A family listed with None is known to the
catalog (its cards validate) but cannot be loaded yet.
"""

from __future__ import annotations

import importlib

FAMILIES: dict[str, str | None] = {
    "clip": "vlmzoo.families.clip:ClipModel",
    "siglip": "vlmzoo.families.siglip:SiglipModel",
    "blip": "vlmzoo.families.blip:BlipModel",
    # Known to the catalog, code still to come.
    "blip2": None,
    "instructblip": None,
    "git": None,
    "kosmos2": None,
    "florence2": None,
    "llava": None,
    "llava_next": None,
    "qwen2_vl": None,
    "paligemma": None,
    "mllama": None,
    "idefics3": None,
    "gemma3": None,
    "minicpm_v": None,
    "molmo": None,
    "moondream": None,
    "nvlm": None,
    "minigpt4": None,
    "imagebind": None,
    "seed": None,
    "openai": None,
    "gemini": None,
}

# transformers ``config.model_type`` -> family, for loading a folder or hub id with no card.
MODEL_TYPES: dict[str, str] = {
    "clip": "clip",
    "siglip": "siglip",
    "blip": "blip",
}


def family_class(name: str):
    from vlmzoo.errors import UnknownModelError

    path = FAMILIES.get(name)
    if path is None:
        if name in FAMILIES:
            raise UnknownModelError(
                f"family {name!r} is in the catalog but vlmzoo cannot load it yet; "
                f"loadable families: {', '.join(k for k, v in FAMILIES.items() if v)}"
            )
        raise UnknownModelError(f"unknown family {name!r}")
    module, cls = path.split(":")
    return getattr(importlib.import_module(module), cls)
