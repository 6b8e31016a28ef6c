"""NVLM-D's official checkpoint files -> the modules in modeling.py.

The Hugging Face repo nvidia/NVLM-D-72B publishes ``config.json`` (``model_type`` "NVLM_D":
``vision_config`` an InternViT config, ``llm_config`` a Qwen2 config whose ``model_type`` reads
"llama" but whose ``architectures`` say Qwen2ForCausalLM, ``downsample_ratio`` 0.5,
``select_layer`` -1, ``ps_version`` "v2") and safetensors named ``vision_model.*``, ``mlp1.*``
and ``language_model.*``. modeling.py keeps the vision and projector names; the LLM is
transformers' Qwen2 class, one prefix down.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from vlmzoo.errors import UnknownModelError
from vlmzoo.families import hf
from vlmzoo.families.checkpoints import load_official, rebuild_rotary
from vlmzoo.families.nvlm.modeling import nvlm_class

MODEL_TYPE = "NVLM_D"
TABLE: list = [
    (r"language_model\.(.+)", r"\1"),
    (r"((?:vision_model|mlp1)\..+)", r"\1"),
]
# what the port implements; anything else in config.json is refused by name
EXPECTED = {"select_layer": -1, "ps_version": "v2", "downsample_ratio": 0.5, "force_image_size": 448}


@dataclass(frozen=True)
class VisionConfig:
    """The InternViT fields the modules read (the released InternViT-6B-448px-V1-5's by default)."""
    hidden_size: int = 3200
    num_attention_heads: int = 25
    intermediate_size: int = 12800
    num_hidden_layers: int = 45
    image_size: int = 448
    patch_size: int = 14
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = False
    qk_normalization: bool = True
    norm_type: str = "rms_norm"
    hidden_act: str = "gelu"

    @classmethod
    def from_dict(cls, raw: dict) -> VisionConfig:
        config = cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        if not config.qk_normalization or config.norm_type != "rms_norm" or config.hidden_act != "gelu":
            raise UnknownModelError("an InternViT without qk-normalization, RMS norms or GELU is not NVLM-D's")
        return config


def read_config(path: Path) -> dict:
    raw = hf.read_config(path)
    if raw.get("model_type") != MODEL_TYPE:
        raise UnknownModelError(f"{path}: not an NVLM-D checkpoint (model_type {raw.get('model_type')!r}, "
                                f"expected {MODEL_TYPE!r})")
    wrong = {k: raw[k] for k, v in EXPECTED.items() if k in raw and raw[k] != v}
    if wrong:
        raise UnknownModelError(f"{path}: NVLM-D with {wrong} is not implemented (vlmzoo implements {EXPECTED})")
    llm = raw.get("llm_config") or {}
    if "Qwen2ForCausalLM" not in (llm.get("architectures") or []):
        raise UnknownModelError(f"{path}: NVLM-D with an LLM of {llm.get('architectures')}: vlmzoo implements the "
                                "Qwen2 one (NVLM-D-72B)")
    return raw


def text_config(llm: dict):
    from transformers import Qwen2Config

    keep = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "rms_norm_eps", "rope_theta", "max_position_embeddings", "vocab_size", "hidden_act", "bos_token_id",
            "eos_token_id")
    return Qwen2Config(**{k: llm[k] for k in keep if k in llm}, tie_word_embeddings=False, use_sliding_window=False)


def load(path: Path, *, device: str, dtype):
    import torch

    raw = read_config(path)
    text = text_config(raw["llm_config"])
    vision = VisionConfig.from_dict(raw.get("vision_config") or {})
    with torch.device("meta"):
        model = nvlm_class()(text)
        model.attach_vision(vision)
    rebuild_rotary(model, text)
    return load_official(model, path, TABLE, device=device, dtype=dtype)
