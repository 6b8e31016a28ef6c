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
    "blip2": "vlmzoo.families.blip2:Blip2Model",
    "instructblip": "vlmzoo.families.instructblip:InstructBlipModel",
    "git": "vlmzoo.families.git:GitModel",
    "kosmos2": "vlmzoo.families.kosmos2:Kosmos2Model",
    "florence2": "vlmzoo.families.florence2:Florence2Model",
    "llava": "vlmzoo.families.llava:LlavaModel",
    "llava_next": "vlmzoo.families.llava:LlavaNextModel",
    "qwen2_vl": "vlmzoo.families.qwen2_vl:Qwen2VLModel",
    "qwen2_5_vl": "vlmzoo.families.qwen2_vl:Qwen25VLModel",
    "paligemma": "vlmzoo.families.paligemma:PaliGemmaModel",
    "mllama": "vlmzoo.families.mllama:MllamaModel",
    "idefics3": "vlmzoo.families.idefics3:Idefics3Model",
    "gemma3": "vlmzoo.families.gemma3:Gemma3Model",
    # API models (families/api.py): no weights, a provider's HTTP API behind the same tasks.
    "openai": "vlmzoo.families.openai_api:OpenAIModel",
    "openai_compatible": "vlmzoo.families.openai_api:OpenAICompatibleModel",
    "gemini": "vlmzoo.families.gemini_api:GeminiModel",
    # Known to the catalog, code still to come.
    "minicpm_v": None,
    "molmo": None,
    "moondream": None,
    "nvlm": None,
    "minigpt4": None,
    "imagebind": None,
    "seed": None,
}

# transformers ``config.model_type`` -> family, for loading a folder or hub id with no card.
MODEL_TYPES: dict[str, str] = {
    "clip": "clip",
    "siglip": "siglip",
    "blip": "blip",
    "llava": "llava",
    "llava_next": "llava_next",
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "mllama": "mllama",
    "idefics3": "idefics3",
    "smolvlm": "idefics3",
    "gemma3": "gemma3",
    "blip-2": "blip2",
    "instructblip": "instructblip",
    "git": "git",
    "kosmos-2": "kosmos2",
    "florence2": "florence2",
    "paligemma": "paligemma",
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
