"""Molmo's official checkpoint files -> the modules in modeling.py.

The Hugging Face repos allenai/Molmo-7B-D-0924 and -7B-O-0924 publish ``config.json``
(``model_type`` "molmo", class MolmoForCausalLM) and safetensors whose tensors are the official
``Molmo`` module's under "model." (github.com/allenai/molmo ``olmo/hf_molmo.py`` loads them so).
The vision backbone keeps its official names here; the LLM becomes transformers' Qwen2 / OLMo 2
decoder, so its fused tensors are split (``att_proj`` is q | k | v; ``ff_proj`` is up | gate,
the second half gated) and the embedding is joined with the 128 rows added after pretraining.
"""

from __future__ import annotations

from pathlib import Path

from vlmzoo.errors import UnknownModelError
from vlmzoo.families import hf
from vlmzoo.families.checkpoints import Join, Split, load_official, rebuild_rotary
from vlmzoo.families.molmo.modeling import ADDED_ROWS, VisionConfig, molmo_classes

MODEL_TYPE = "molmo"
B = r"model\.transformer\.blocks\.(\d+)\."
L = r"model.layers.\1."

# the rows both LLMs share
_COMMON: list = [
    (r"model\.(vision_backbone\..+)", r"\1"),
    Join((r"model\.transformer\.wte\.embedding", r"model\.transformer\.wte\.new_embedding"),
         "model.embed_tokens.weight"),
    (r"model\.transformer\.ln_f\.weight", "model.norm.weight"),
    (r"model\.transformer\.ff_out\.weight", "lm_head.weight"),
    Split(B + r"att_proj\.(weight|bias)", tuple(L + f"self_attn.{p}_proj." + r"\2" for p in "qkv")),
    (B + r"attn_out\.weight", L + "self_attn.o_proj.weight"),
    Split(B + r"ff_proj\.weight", (L + "mlp.up_proj.weight", L + "mlp.gate_proj.weight")),
    (B + r"ff_out\.weight", L + "mlp.down_proj.weight"),
]
TABLES = {
    # 7B-D: norms before attention and MLP (Qwen2's input / post-attention layernorms)
    "qwen2": _COMMON + [(B + r"attn_norm\.weight", L + "input_layernorm.weight"),
                        (B + r"ff_norm\.weight", L + "post_attention_layernorm.weight")],
    # 7B-O: norms after them (OLMo 2's), and RMS norms over the whole q and k
    "olmo2": _COMMON + [(B + r"attn_norm\.weight", L + "post_attention_layernorm.weight"),
                        (B + r"ff_norm\.weight", L + "post_feedforward_layernorm.weight"),
                        (B + r"(q|k)_norm\.weight", L + r"self_attn.\2_norm.weight")],
}


def read_config(path: Path) -> dict:
    raw = hf.read_config(path)
    if raw.get("model_type") != MODEL_TYPE:
        raise UnknownModelError(f"{path}: not a Molmo checkpoint (model_type {raw.get('model_type')!r}, "
                                f"expected {MODEL_TYPE!r})")
    return raw


def llm_kind(raw: dict) -> str:
    """Which decoder the config describes: the released 7B-D's or 7B-O's; anything else is
    refused by what differs."""
    flags = (bool(raw.get("attention_layer_norm")), bool(raw.get("norm_after")), bool(raw.get("qkv_bias")))
    kinds = {(False, False, True): "qwen2", (True, True, False): "olmo2"}
    if flags not in kinds:
        raise UnknownModelError(
            "a Molmo LLM with attention_layer_norm={}, norm_after={}, qkv_bias={}: vlmzoo implements the released "
            "7B-D's (False, False, True) and 7B-O's (True, True, False)".format(*flags))
    if raw.get("clip_qkv") is not None or raw.get("weight_tying") or raw.get("layer_norm_type", "rms") != "rms":
        raise UnknownModelError("a Molmo LLM with clip_qkv, tied weights or non-RMS norms is not implemented")
    if raw.get("block_type", "sequential") != "sequential":
        raise UnknownModelError(f"Molmo block_type {raw['block_type']!r} (MolmoE) is not implemented")
    return kinds[flags]


def text_config(raw: dict, kind: str):
    """The transformers config of the decoder; its vocabulary is the whole embedding."""
    from transformers import Olmo2Config, Qwen2Config

    try:
        common = dict(
            hidden_size=raw["hidden_size"], intermediate_size=raw["intermediate_size"] // 2,
            num_hidden_layers=raw["num_hidden_layers"], num_attention_heads=raw["num_attention_heads"],
            num_key_value_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
            rms_norm_eps=raw["layer_norm_eps"], rope_theta=float(raw["rope_theta"]),
            max_position_embeddings=raw["max_position_embeddings"],
            vocab_size=raw["embedding_size"] + raw.get("additional_vocab_size", ADDED_ROWS),
            tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        )
    except KeyError as e:
        raise UnknownModelError(f"Molmo config.json lacks {e.args[0]!r}") from None
    if kind == "qwen2":
        return Qwen2Config(**common, use_sliding_window=False)
    return Olmo2Config(**common, attention_bias=False)


def load(path: Path, *, device: str, dtype):
    import torch

    raw = read_config(path)
    kind = llm_kind(raw)
    try:
        vision = VisionConfig.from_dict(raw.get("vision_backbone") or {})
    except (TypeError, ValueError) as e:
        raise UnknownModelError(f"{path}: {e}") from None
    config = text_config(raw, kind)
    with torch.device("meta"):
        model = molmo_classes()[kind](config)
        model.attach_vision(vision, raw["embedding_size"], raw["intermediate_size"] // 2)
    rebuild_rotary(model, config)
    return load_official(model, path, TABLES[kind], device=device, dtype=dtype)
