"""Writes tensors-full-size-*.json: the tensor names and shapes of every file the official
MiniGPT-4 / MiniGPT-v2 code loads, at the released sizes, built with the official classes on the
meta device (no weights), with parameter counts.

    python make_tensor_list.py --upstream /work/scratch/minigpt4-ref       (writes beside this file)

vlmzoo's own driver, no upstream code: it imports the official package exported to the scratch
folder (see README.md) through make_reference.py's import helper, with the full EVA ViT-g shape
and bert-base-uncased's config in place of the tiny ones, and:

- eva_vit_g.pth: eva_vit.VisionTransformer with the arguments create_eva_vit_g passes (the
  reference run asserts them), 224 px as the file is stored;
- blip2_pretrained_flant5xxl.pth: MiniGPT4.init_Qformer(32, 1408, freeze=True) (bert-base-uncased
  with cross-attention every 2nd layer; word / position embeddings, LM head and text FFNs removed),
  plus query_tokens, ln_vision and LAVIS Blip2T5's t5_proj (768 -> FlanT5-XXL d_model 4096);
- the LLM folders: transformers 4.30 LlamaForCausalLM at the Vicuna-7B / 13B and Llama-2-7B-chat
  configurations; MiniGPT-v2's LoRA through the official BaseModel.init_llm (peft 0.2.0) with the
  LLM loader replaced by the meta model;
- the MiniGPT checkpoints: runner_base._save_checkpoint's selection (parameters requiring grad,
  plus buffers) applied to the assembled full-size model with the official freeze settings.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import math
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_reference as mr  # noqa: E402

HF_LLMS = {"vicuna7b": "Vision-CAIR/vicuna-7b (Vicuna V0 7B)",
           "vicuna13b": "Vision-CAIR/vicuna (Vicuna V0 13B)",
           "llama2_7b_chat": "meta-llama/Llama-2-7b-chat-hf"}


def meta():
    """Parameters on the meta device (accelerate's init_empty_weights; buffers and scalar helper
    tensors stay on the CPU: eva_vit calls .item() on a linspace while building)."""
    from accelerate import init_empty_weights

    return init_empty_weights(include_buffers=False)


def shapes(sd: dict) -> dict:
    return {k: list(v.shape) for k, v in sd.items()}


def count(sd: dict) -> int:
    return sum(math.prod(v.shape) for v in sd.values())


def build_vit(up, img_size=224):
    with meta():
        return up.original_VisionTransformer(
            img_size=img_size, patch_size=14, use_mean_pooling=False, qkv_bias=True,
            drop_path_rate=0, use_checkpoint=False,
            norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6), **mr.VIT_FULL)


def build_qformer(up):
    with meta():
        qformer, query_tokens = up.minigpt4_model.MiniGPT4.init_Qformer(
            mr.NUM_QUERY_TOKEN, mr.VIT_FULL["embed_dim"], True)
    return qformer, query_tokens


def build_llm(up, which: str, lora: bool):
    cfg = up.transformers.LlamaConfig(**mr.LLM_FULL[which], **mr.LLM_COMMON)
    with meta():
        model = up.modeling_llama.LlamaForCausalLM(cfg)
    if not lora:
        for p in model.parameters():
            p.requires_grad = False  # BaseModel.init_llm with lora_r == 0
        return model
    # the official init_llm (prepare_model_for_int8_training + LoraConfig + get_peft_model), with
    # its two loaders replaced by stand-ins returning the meta model
    base = up.base_model
    saved = base.LlamaTokenizer, base.LlamaForCausalLM
    base.LlamaTokenizer = types.SimpleNamespace(from_pretrained=lambda path, use_fast: types.SimpleNamespace())
    base.LlamaForCausalLM = types.SimpleNamespace(from_pretrained=lambda path, **kw: model)
    try:
        with meta(), contextlib.redirect_stdout(io.StringIO()):
            llm, _ = base.BaseModel.init_llm(None, "llama", lora_r=64, lora_alpha=16, lora_dropout=0.05)
    finally:
        base.LlamaTokenizer, base.LlamaForCausalLM = saved
    return llm


def minigpt_checkpoint(up, variant: str, llm_name: str) -> dict:
    """Assemble the model as from_config does (frozen ViT + ln_vision, frozen Q-Former, LLM frozen
    or LoRA-wrapped, trainable llama_proj) and apply _save_checkpoint's selection."""
    v = mr.VARIANTS[variant]
    holder = torch.nn.Module()
    holder.llama_model = build_llm(up, llm_name, lora=(variant == "minigptv2"))
    holder.visual_encoder = build_vit(up, 448 if variant == "minigptv2" else 224)
    with meta():
        holder.ln_vision = up.base_model.LayerNorm(mr.VIT_FULL["embed_dim"])
    hidden = mr.LLM_FULL[llm_name]["hidden_size"]
    if v["qformer_file"]:
        holder.Qformer, holder.query_tokens = build_qformer(up)
        img_f_dim = mr.BERT_BASE_UNCASED["hidden_size"]
    else:
        img_f_dim = mr.VIT_FULL["embed_dim"] * 4
    with meta():
        holder.llama_proj = torch.nn.Linear(img_f_dim, hidden)
    for mod in (holder.visual_encoder, holder.ln_vision):
        for p in mod.parameters():
            p.requires_grad = False
    grad = {k: p.requires_grad for k, p in holder.named_parameters()}
    sd = holder.state_dict()
    saved = {k: t for k, t in sd.items() if not (k in grad and not grad[k])}
    params = {k for k in saved if k in grad}
    llm_inner = mr.llm_of(holder)
    llm_sd = {k: t for k, t in llm_inner.state_dict().items()}
    llm_params = {k: t for k, t in llm_sd.items() if not k.endswith("inv_freq")}
    if "lm_head.0.weight" in llm_params:  # peft 0.2.0 CastOutputToFloat wrapper (not in the file)
        llm_params["lm_head.weight"] = llm_params.pop("lm_head.0.weight")
    total = {
        "visual_encoder": count({k: t for k, t in holder.visual_encoder.named_parameters()}),
        "ln_vision": count(dict(holder.ln_vision.named_parameters())),
        "llama_proj": count(dict(holder.llama_proj.named_parameters())),
        "llm": count({k: t for k, t in llm_params.items() if ".lora_" not in k}),
    }
    if v["qformer_file"]:
        total["Qformer+query_tokens"] = count(dict(holder.Qformer.named_parameters())) + holder.query_tokens.numel()
    if variant == "minigptv2":
        total["lora"] = count({k: t for k, t in llm_sd.items() if ".lora_" in k})
    return {
        "checkpoint_model": shapes(saved),
        "checkpoint_parameters": sorted(params),
        "checkpoint_buffers": sorted(set(saved) - params),
        "checkpoint_parameter_count": count({k: saved[k] for k in params}),
        "llm_tensors": shapes({k: t for k, t in llm_params.items() if ".lora_" not in k}),
        "llm_buffers_in_state_dict_4_30": sorted(k for k in llm_sd if k.endswith("inv_freq")),
        "parameter_counts": total,
        "total_parameters": sum(total.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    up = mr.import_official(args.upstream)
    mr.install_tiny_patches(up, tiny=False)  # full EVA ViT-g shape, bert-base-uncased config
    src = f"github.com/{mr.UPSTREAM_REPO}@{mr.UPSTREAM_COMMIT}"

    vit = build_vit(up)
    vit_sd = vit.state_dict()
    block_params = count({k: t for k, t in vit_sd.items() if k.startswith("blocks.0.")})
    doc = {
        "source": f"{src}: minigpt4/models/eva_vit.py VisionTransformer with create_eva_vit_g's "
                  "arguments, built on the meta device",
        "file": "eva_vit_g.pth (https://storage.googleapis.com/sfr-vision-language-research/LAVIS/"
                "models/BLIP2/eva_vit_g.pth, 1.89 GiB: float16)",
        "layout": "bare state_dict (no 'model' key), loaded with strict=False after "
                  "interpolate_pos_embed; the names are the module's own",
        "create_eva_vit_g": dict(mr.VIT_FULL, **mr.VIT_FIXED, img_size=224,
                                 mlp_hidden=int(1408 * 4.3637), head_dim=88),
        "pos_embed_in_model_at_448": list(build_vit(up, 448).pos_embed.shape),
        "released_file_size": {
            "observed": "1.89G in torch.hub's download bar (GiB: unit_divisor=1024)",
            "float16_bytes_39_blocks": 2 * count(vit_sd),
            "float16_bytes_40_blocks": 2 * (count(vit_sd) + block_params),
            "reading": "the file holds EVA-CLIP-g's 40 blocks (maybe a small head too); the "
                       "39-block model loads it with strict=False, so blocks.39.* is unused",
        },
        "total_parameters": count(vit_sd),
        "tensors": shapes(vit_sd),
    }
    (args.out / "tensors-full-size-eva_vit_g.json").write_text(json.dumps(doc, indent=0) + "\n")
    print("eva_vit_g", len(vit_sd), f"{count(vit_sd):,}")

    qformer, query_tokens = build_qformer(up)
    holder = torch.nn.Module()
    holder.query_tokens = query_tokens
    with meta():
        holder.ln_vision = up.base_model.LayerNorm(mr.VIT_FULL["embed_dim"])
    holder.Qformer = qformer
    with meta():
        holder.t5_proj = torch.nn.Linear(mr.BERT_BASE_UNCASED["hidden_size"], mr.T5_PROJ_OUT["full"])
    q_sd = holder.state_dict()
    params = {k for k, _ in holder.named_parameters()}
    doc = {
        "source": f"{src}: MiniGPT4.init_Qformer({mr.NUM_QUERY_TOKEN}, 1408, freeze=True) with "
                  "bert-base-uncased's config, plus query_tokens, ln_vision (base_model.LayerNorm "
                  "1408) and LAVIS Blip2T5's t5_proj (768 -> 4096), built on the meta device",
        "file": "blip2_pretrained_flant5xxl.pth (https://storage.googleapis.com/sfr-vision-"
                "language-research/LAVIS/models/BLIP2/blip2_pretrained_flant5xxl.pth)",
        "layout": "{'model': state_dict, ...}; load_from_pretrained reads checkpoint['model'] and "
                  "loads it into the whole MiniGPT4 with strict=False",
        "bert_config": mr.BERT_BASE_UNCASED,
        "cross_attention_layers": [i for i in range(12) if i % 2 == 0],
        "used_by_minigpt4": sorted(k for k in q_sd if not k.startswith("t5_proj")),
        "ignored_by_minigpt4": sorted(k for k in q_sd if k.startswith("t5_proj")),
        "buffers": sorted(set(q_sd) - params),
        "total_parameters": count({k: q_sd[k] for k in params}),
        "parameters_used_by_minigpt4": count({k: q_sd[k] for k in params if not k.startswith("t5_proj")}),
        "tensors": shapes(q_sd),
    }
    (args.out / "tensors-full-size-blip2_pretrained_flant5xxl.json").write_text(json.dumps(doc, indent=0) + "\n")
    print("blip2 qformer", len(q_sd), f"{doc['total_parameters']:,}")

    jobs = [("minigpt4_vicuna", "vicuna7b", "minigpt4_vicuna7b", "pretrained_minigpt4_7b.pth"),
            ("minigpt4_vicuna", "vicuna13b", "minigpt4_vicuna13b", "pretrained_minigpt4.pth"),
            ("minigpt4_llama2", "llama2_7b_chat", "minigpt4_llama2", "pretrained_minigpt4_llama2_7b.pth"),
            ("minigptv2", "llama2_7b_chat", "minigptv2", "minigptv2_checkpoint.pth")]
    for variant, llm_name, out_name, ckpt in jobs:
        info = minigpt_checkpoint(up, variant, llm_name)
        v = mr.VARIANTS[variant]
        doc = {
            "source": f"{src}: {v['eval_config']} ({v['model_type']}); model assembled from the "
                      "official modules on the meta device, checkpoint keys = runner_base."
                      "_save_checkpoint's selection (parameters with requires_grad, plus buffers)",
            "checkpoint_file": ckpt,
            "checkpoint_layout": "{'model': state_dict, 'optimizer', 'config', 'scaler', 'epoch'}; "
                                 "from_config reads ckpt['model'], load_state_dict(strict=False)",
            "llm": HF_LLMS[llm_name],
            "llm_config": dict(mr.LLM_FULL[llm_name], **mr.LLM_COMMON),
            "image_size": 448 if variant == "minigptv2" else 224,
            "image_tokens": 32 if v["qformer_file"] else (448 // 14) ** 2 // 4 if variant == "minigptv2" else (224 // 14) ** 2 // 4,
            **info,
        }
        if variant == "minigptv2":
            doc["lora"] = {"r": 64, "lora_alpha": 16, "scaling": 0.25, "target_modules": ["q_proj", "v_proj"],
                           "dropout": 0.05, "peft": "0.2.0 (environment.yml): keys without an adapter name"}
        (args.out / f"tensors-full-size-{out_name}.json").write_text(json.dumps(doc, indent=0) + "\n")
        print(out_name, len(info["checkpoint_model"]), "checkpoint tensors,",
              f"{info['checkpoint_parameter_count']:,} checkpoint parameters,",
              f"{info['total_parameters']:,} model parameters")


if __name__ == "__main__":
    main()
