"""MiniCPM-V-2.6's official checkpoint files -> the modules in modeling.py.

The Hugging Face repo openbmb/MiniCPM-V-2_6 publishes ``config.json`` (``model_type`` "minicpmv",
``version`` 2.6, class MiniCPMV: a Qwen2 config plus ``vision_config``, ``query_num``,
``slice_config``, ``drop_vision_last_layer``) and safetensors whose tensors are ``llm.*`` (a
Qwen2ForCausalLM), ``vpm.*`` (SigLIP) and ``resampler.*``. The vision and resampler names are
modeling.py's; the LLM is transformers' Qwen2 class itself, one prefix down. Other MiniCPM-V
versions (2.0, Llama3-V-2.5, 4.x) are other architectures and are refused by version.
"""

from __future__ import annotations

from pathlib import Path

from vlmzoo.errors import UnknownModelError
from vlmzoo.families import hf
from vlmzoo.families.checkpoints import load_official, rebuild_rotary
from vlmzoo.families.minicpm_v.modeling import minicpmv_class

MODEL_TYPE = "minicpmv"
VERSION = 2.6
TABLE: list = [
    (r"llm\.(.+)", r"\1"),
    (r"((?:vpm|resampler)\..+)", r"\1"),
]
# the Qwen2 fields of config.json (the rest are MiniCPM-V's own)
TEXT_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "rms_norm_eps", "rope_theta", "max_position_embeddings", "vocab_size", "hidden_act",
               "bos_token_id", "eos_token_id")


def read_config(path: Path) -> dict:
    raw = hf.read_config(path)
    if raw.get("model_type") != MODEL_TYPE or raw.get("version") != VERSION:
        raise UnknownModelError(f"{path}: not a MiniCPM-V-2.6 checkpoint (model_type {raw.get('model_type')!r}, "
                                f"version {raw.get('version')!r}; vlmzoo reads model_type {MODEL_TYPE!r} version "
                                f"{VERSION})")
    return raw


def configs(raw: dict):
    """(the Qwen2 config, the SigLIP config) of a config.json."""
    from transformers import Qwen2Config, SiglipVisionConfig

    if raw.get("tie_word_embeddings"):
        raise UnknownModelError("MiniCPM-V-2.6 with tied word embeddings is not the released layout")
    text = Qwen2Config(**{k: raw[k] for k in TEXT_FIELDS if k in raw}, tie_word_embeddings=False,
                       use_sliding_window=False)
    vision = dict(raw.get("vision_config") or {})
    vision.pop("model_type", None)
    vision = SiglipVisionConfig(**vision)
    if raw.get("drop_vision_last_layer", True):  # the config class's default, as the official code reads it
        vision.num_hidden_layers -= 1
    vision._attn_implementation = "sdpa"
    return text, vision


def load(path: Path, *, device: str, dtype):
    import torch

    raw = read_config(path)
    text, vision = configs(raw)
    with torch.device("meta"):
        model = minicpmv_class()(text)
        model.attach_vision(vision, raw.get("query_num", 64))
    model.vision_batch_size = raw.get("vision_batch_size", model.vision_batch_size)
    rebuild_rotary(model, text)
    return load_official(model, path, TABLE, device=device, dtype=dtype)
