"""The family registry: one table saying, per family, where its code lives and what it claims.

A row names the family's model class lazily (``"module:Class"``, imported only when a model of
that family is loaded: the vLLM-style lazy map), the transformers ``config.model_type`` values a
checkpoint folder with no card loads as, and for API families the name prefix
(``openai:<model>``). A row whose class is None is known to the catalog (its cards validate)
but cannot be loaded yet.

Packages outside vlmzoo add families through the ``vlmzoo.families`` entry-point group: the
entry point names a ``Family`` object, whose ``cards`` folder adds catalog cards too. See
CONTRIBUTING.md ("Adding a family").
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from functools import lru_cache

ENTRY_POINT_GROUP = "vlmzoo.families"


@dataclass(frozen=True)
class Family:
    name: str
    cls: str | None  # "module:Class" of a VLModel subclass; None while the code is still to come
    model_types: tuple[str, ...] = ()  # transformers model_type values a card-less folder loads as
    api_prefix: str | None = None  # API families: names "<prefix>:<model>" pick this family
    cards: str | None = None  # "package" or "package/folder" holding card TOML files (plugins)
    # official weight file names a card-less folder without a config.json loads by (ImageBind's
    # release is one .pth and no config)
    weight_files: tuple[str, ...] = ()

    def __post_init__(self):
        if self.cls is not None and self.cls.count(":") != 1:
            raise ValueError(f"family {self.name!r}: cls must be 'module:Class', got {self.cls!r}")


_F = "vlmzoo.families"
BUILTIN: tuple[Family, ...] = (
    Family("clip", f"{_F}.clip:ClipModel", ("clip",)),
    Family("siglip", f"{_F}.siglip:SiglipModel", ("siglip",)),
    Family("blip", f"{_F}.blip:BlipModel", ("blip",)),
    Family("blip2", f"{_F}.blip2:Blip2Model", ("blip-2",)),
    Family("instructblip", f"{_F}.instructblip:InstructBlipModel", ("instructblip",)),
    Family("git", f"{_F}.git:GitModel", ("git",)),
    Family("kosmos2", f"{_F}.kosmos2:Kosmos2Model", ("kosmos-2",)),
    Family("florence2", f"{_F}.florence2:Florence2Model", ("florence2",)),
    Family("llava", f"{_F}.llava:LlavaModel", ("llava",)),
    Family("llava_next", f"{_F}.llava:LlavaNextModel", ("llava_next",)),
    Family("qwen2_vl", f"{_F}.qwen2_vl:Qwen2VLModel", ("qwen2_vl",)),
    Family("qwen2_5_vl", f"{_F}.qwen2_vl:Qwen25VLModel", ("qwen2_5_vl",)),
    Family("paligemma", f"{_F}.paligemma:PaliGemmaModel", ("paligemma",)),
    Family("mllama", f"{_F}.mllama:MllamaModel", ("mllama",)),
    Family("idefics3", f"{_F}.idefics3:Idefics3Model", ("idefics3", "smolvlm")),
    Family("gemma3", f"{_F}.gemma3:Gemma3Model", ("gemma3",)),
    # implemented in vlmzoo (families/<name>/): official checkpoint layouts, no Hub code
    Family("molmo", f"{_F}.molmo:MolmoModel", ("molmo",)),
    Family("minicpm_v", f"{_F}.minicpm_v:MiniCPMVModel", ("minicpmv",)),
    Family("nvlm", f"{_F}.nvlm:NVLMModel", ("NVLM_D",)),
    # moondream2's 2025 layout; its config.json says model_type "moondream1" as the original's does
    # (class_for tells them apart), which a card of family "moondream1" loads directly
    Family("moondream", f"{_F}.moondream:MoondreamModel", ("moondream1",)),
    Family("moondream1", f"{_F}.moondream.moondream1:Moondream1Model"),
    Family("imagebind", f"{_F}.imagebind:ImageBindModel", weight_files=("imagebind_huge.pth",)),
    # SEED tokenizer / SEED-LLaMA: a folder laid out as the official code finds its files (the SEED
    # tokenizer, eva_vit_g.pth, the LLM, the unCLIP decoder); before minigpt4, whose files include
    # eva_vit_g.pth too
    Family("seed", f"{_F}.seed:SeedTokenizerModel",
           weight_files=("seed_tokenizer/seed_quantizer.pt", "seed_quantizer.pt", "seed.json")),
    # MiniGPT-4 / MiniGPT-v2: the official layout has no config.json; a folder holding a published
    # MiniGPT checkpoint, eva_vit_g.pth or vlmzoo's minigpt4.json settings loads as it
    Family("minigpt4", f"{_F}.minigpt4:MiniGPT4Model",
           weight_files=("pretrained_minigpt4.pth", "pretrained_minigpt4_7b.pth", "prerained_minigpt4_7b.pth",
                         "pretrained_minigpt4_llama2_7b.pth", "minigptv2_checkpoint.pth", "eva_vit_g.pth",
                         "minigpt4.json")),
    # API models (families/api/): no weights, a provider's HTTP API behind the same tasks
    Family("openai", f"{_F}.api.openai:OpenAIModel", api_prefix="openai"),
    Family("openai_compatible", f"{_F}.api.openai:OpenAICompatibleModel", api_prefix="openai-compatible"),
    Family("gemini", f"{_F}.api.gemini:GeminiModel", api_prefix="gemini"),
)


@lru_cache(maxsize=1)
def families() -> dict[str, Family]:
    """Every family by name: the built-in table, then those installed plugins add.

    A plugin that fails to load, or claims a name, model type or prefix already taken, is left
    out with a warning naming it: one broken plugin must not take the whole catalog down.
    """
    table = {f.name: f for f in BUILTIN}
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            family = ep.load()
        except Exception as e:  # noqa: BLE001 - any import error of foreign code
            warnings.warn(f"vlmzoo plugin {ep.name} ({ep.value}) failed to load and is left out: {e}", stacklevel=2)
            continue
        problem = _clash(family, table)
        if problem:
            warnings.warn(f"vlmzoo plugin {ep.name} ({ep.value}) is left out: {problem}", stacklevel=2)
            continue
        table[family.name] = family
    return table


def _clash(family, table: dict[str, Family]) -> str | None:
    if not isinstance(family, Family):
        return f"the entry point must name a vlmzoo.families.Family, not {type(family).__name__}"
    if family.name in table:
        return f"family {family.name!r} exists already"
    for other in table.values():
        taken = set(family.model_types) & set(other.model_types)
        if taken:
            return f"model type(s) {sorted(taken)} belong to family {other.name!r}"
        if family.api_prefix is not None and family.api_prefix == other.api_prefix:
            return f"name prefix {family.api_prefix!r} belongs to family {other.name!r}"
    return None


def get(name: str) -> Family:
    from vlmzoo.errors import UnknownModelError

    table = families()
    if name not in table:
        raise UnknownModelError(f"unknown family {name!r}; families: {', '.join(sorted(table))}")
    return table[name]


def loadable(name: str) -> bool:
    """The family has code: its models can be loaded."""
    return get(name).cls is not None


def family_class(name: str):
    """The family's model class (its module imported now)."""
    from vlmzoo.errors import UnknownModelError
    from vlmzoo.families.base import VLModel

    family = get(name)
    if family.cls is None:
        built = ", ".join(f.name for f in families().values() if f.cls)
        raise UnknownModelError(f"family {name!r} is in the catalog but vlmzoo cannot load it yet; "
                                f"loadable families: {built}")
    module, attr = family.cls.split(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, VLModel)):
        raise UnknownModelError(f"family {name!r}: {family.cls} is not a vlmzoo VLModel subclass")
    return cls


def for_model_type(model_type: str) -> Family | None:
    """The family a transformers ``model_type`` loads as, if any."""
    return next((f for f in families().values() if model_type in f.model_types), None)


def for_weight_files(folder) -> Family | None:
    """The family whose official weight file ``folder`` holds, if any."""
    from pathlib import Path

    return next((f for f in families().values() if any((Path(folder) / w).is_file() for w in f.weight_files)), None)


def model_types() -> list[str]:
    return sorted(t for f in families().values() for t in f.model_types)


def for_api_prefix(prefix: str) -> Family | None:
    return next((f for f in families().values() if f.api_prefix == prefix), None)
