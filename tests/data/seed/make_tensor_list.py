"""Full-size tensor lists of the released SEED / SEED-LLaMA files, built with the official classes.

vlmzoo's own driver (no upstream code): it imports the official AILab-CVC/SEED code from a scratch
export and builds, with accelerate's init_empty_weights (parameters on the meta device),

- the SEED-2 image tokenizer ``Blip2QformerQuantizer`` exactly as ``ImageTokenizer`` does
  (``from_pretrained`` defaults: EVA ViT-g, vit_precision fp16, 32 queries, bert-base-uncased
  Q-Former, codebook 8192 x 32, image_features_dim 1024), split into what ``seed_quantizer.pt``
  can hold and what LAVIS's ``eva_vit_g.pth`` supplies;
- the SEED-LLaMA LLMs (``models/llama_xformer.LlamaForCausalLM``) at the published config.json
  values of seed-llama-8b (Vicuna-7B based) and seed_llama_14b_sft (LLaMA2-chat-13B based).

    python make_tensor_list.py --upstream /work/scratch/seed-ref/src --work /work/scratch/seed-ref/work
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_reference as mr  # noqa: E402  (environment set-up and constants)

# bert-base-uncased config.json (the hub file; standard BERT-base values)
BERT_BASE = {
    "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": False,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
    "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
    "type_vocab_size": 2, "use_cache": True, "vocab_size": 30522,
}
# published config.json values (see README: sources)
LLM_FULL = {
    "8b": {"architectures": ["LlamaForCausalLM"], "bos_token_id": 0, "eos_token_id": 1, "hidden_act": "silu",
           "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 2048,
           "max_sequence_length": 2048, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
           "pad_token_id": -1, "rms_norm_eps": 1e-06, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
           "use_cache": False, "vocab_size": 40194},
    "14b": {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
            "hidden_size": 5120, "initializer_range": 0.02, "intermediate_size": 13824, "max_position_embeddings": 2048,
            "model_type": "llama", "num_attention_heads": 40, "num_hidden_layers": 40, "num_key_value_heads": 40,
            "pad_token_id": 0, "pretraining_tp": 2, "rms_norm_eps": 1e-05, "rope_scaling": None,
            "tie_word_embeddings": False, "torch_dtype": "float16", "use_cache": False, "vocab_size": 40194},
}
SEED_QUANTIZER_PT_BYTES = 1228836570  # LFS pointer of AILab-CVC/SEED seed_tokenizer/seed_quantizer.pt


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--out", default=str(HERE))
    a = p.parse_args()
    upstream, work, out = Path(a.upstream).resolve(), Path(a.work).resolve(), Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    mr.setup_environment(upstream, work)
    import torch
    from accelerate import init_empty_weights
    from transformers import LlamaConfig
    from models.seed_qformer import blip2, eva_vit, qformer_causual
    from models.seed_qformer.qformer_quantizer import Blip2QformerQuantizer
    from models.llama_xformer import LlamaForCausalLM

    # -- quantizer at full size, on meta. Stand-ins (restored afterwards): the hub downloads.
    bdir = work / "full" / "bert-base-uncased"
    bdir.mkdir(parents=True, exist_ok=True)
    (bdir / "config.json").write_text(json.dumps(BERT_BASE))
    saved_init_tok = blip2.Blip2Base.__dict__["init_tokenizer"]
    saved_dl, saved_load = eva_vit.download_cached_file, eva_vit.torch.load
    blip2.Blip2Base.init_tokenizer = classmethod(lambda cls, truncation_side="right": None)
    qformer_causual.BertLMHeadModel.from_pretrained = classmethod(lambda cls, name, config=None: cls(config))
    eva_vit.download_cached_file = lambda url, check_hash=False, progress=False: url
    eva_vit.torch.load = lambda *a_, **k_: {}
    cwd = os.getcwd()
    try:
        os.chdir(bdir.parent)
        with init_empty_weights():  # parameters on meta; buffers real (linspace(...).item() runs)
            model = Blip2QformerQuantizer(vit_precision="fp16")  # ImageTokenizer's default fp16=True
    finally:
        os.chdir(cwd)
        blip2.Blip2Base.init_tokenizer = saved_init_tok
        del qformer_causual.BertLMHeadModel.from_pretrained
        eva_vit.download_cached_file, eva_vit.torch.load = saved_dl, saved_load
    sd = model.state_dict()
    tensors = [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in sd.items()]
    vit = [t for t in tensors if t["name"].startswith("visual_encoder.")]
    rest = [t for t in tensors if not t["name"].startswith("visual_encoder.")]

    def numel(ts):
        n = 0
        for t in ts:
            k = 1
            for s in t["shape"]:
                k *= s
            n += k
        return n

    groups = {}
    for t in rest:
        g = t["name"].split(".")[0]
        if g == "Qformer":
            g = "Qformer." + t["name"].split(".")[2] if t["name"].startswith("Qformer.bert.") else g
        groups.setdefault(g, [0, 0])
        groups[g][0] += 1
        groups[g][1] += numel([t])
    rest_f32_bytes = sum(numel([t]) * (8 if t["dtype"] == "int64" else 4) for t in rest)
    res = {
        "what": "Blip2QformerQuantizer.from_pretrained() defaults (models/seed_qformer/qformer_quantizer.py), built on "
                "init_empty_weights with the official code; visual_encoder.* is what create_eva_vit_g loads from LAVIS's "
                "eva_vit_g.pth (and converts to fp16), everything else is what seed_quantizer.pt can supply",
        "source": {"repo": mr.UPSTREAM_REPO, "commit": mr.UPSTREAM_COMMIT},
        "bert_base_uncased_config": BERT_BASE,
        "constructor": {"vit_model": "eva_clip_g", "img_size": 224, "num_query_token": 32, "cross_attention_freq": 2,
                        "codebook_embed_dim": 32, "n_embed": 8192, "decode_depth": 4, "use_qformer_image": False,
                        "image_features_dim": 1024, "vit_precision": "fp16"},
        "total_tensors": len(tensors), "total_parameters_and_buffers": numel(tensors),
        "visual_encoder": {"tensors": len(vit), "numel": numel(vit)},
        "non_vit": {"tensors": len(rest), "numel": numel(rest), "float32_bytes": rest_f32_bytes,
                    "groups": {k: {"tensors": v[0], "numel": v[1]} for k, v in sorted(groups.items())}},
        "published_seed_quantizer_pt_bytes": SEED_QUANTIZER_PT_BYTES,
        "tensors": tensors,
    }
    (out / "tensors-full-size-seed_quantizer.json").write_text(json.dumps(res, indent=1) + "\n")
    print("quantizer:", len(tensors), "tensors;", len(vit), "ViT;", numel(rest), "non-ViT values,",
          rest_f32_bytes, "bytes fp32")

    # -- LLMs
    for v, cfg in LLM_FULL.items():
        with init_empty_weights():
            m = LlamaForCausalLM(LlamaConfig(**cfg))
        sd = m.state_dict()
        ts = [{"name": k, "shape": list(t.shape)} for k, t in sd.items()]
        n = sum(p.numel() for p in m.parameters())
        res = {"what": f"models/llama_xformer.LlamaForCausalLM at the published config of {mr.LLM_DIRS[v]} "
                       "(state_dict keys; the rotary inv_freq buffers are persistent in this class)",
               "config": cfg, "total_tensors": len(ts), "total_parameters": n,
               "added_vocab": {"base": 32000, "image_tokens": 8192, "boi_eoi": 2, "vocab_size": cfg["vocab_size"]},
               "tensors": ts}
        (out / f"tensors-full-size-{mr.LLM_DIRS[v]}.json").write_text(json.dumps(res, indent=1) + "\n")
        print(v, len(ts), "tensors", n, "parameters")


if __name__ == "__main__":
    main()
