"""List every tensor of NVLM-D-72B at its released size (meta device, no weights).

vlmzoo's own driver: it builds the same model as make_reference.py (InternVL's official
InternVLChatConfig / InternVLChatModel at commit c7c5af1 with NVLM-D's projector installed) at the
full-size configuration, takes its state dict on the meta device and maps it to the published
layout (InternViT attention padded with 7 dummy heads), then writes tensors-full-size.json.

    python make_tensor_list.py --upstream /work/scratch/nvlm-ref/upstream
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import make_reference as mr

HERE = Path(__file__).resolve().parent

# The public parameter count of nvidia/NVLM-D-72B (the Hugging Face hub's safetensors count,
# shown as "79.38B Params" on a page mirroring the hub's model card data; the hub itself and
# model.safetensors.index.json were not reachable and no copy of the index was found).
PUBLIC_PARAMS_BILLIONS = 79.38


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=HERE / "tensors-full-size.json")
    args = ap.parse_args()

    up = mr.Upstream(args.upstream.resolve())
    cfg = mr.config_dict(mr.FULL_VISION, mr.FULL_LLM, "bfloat16")
    config = up.InternVLChatConfig(**{k: v for k, v in cfg.items() if k not in ("model_type",)})
    # InternVisionEncoder computes its drop-path schedule with torch.linspace(...).item(), which
    # a meta tensor cannot answer: only that call is sent to the CPU while the model is built.
    linspace = torch.linspace
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    try:
        model = mr.build_model(up, config, device="meta")
    finally:
        torch.linspace = linspace
    state = model.state_dict()
    internvl_shapes = {k: list(v.shape) for k, v in state.items()}
    published = mr.to_published(state, config.vision_config, rng=None)
    tensors = {k: list(v.shape) for k, v in published.items()}
    total = sum(int(torch.Size(s).numel()) for s in tensors.values())
    unpadded = sum(int(torch.Size(s).numel()) for s in internvl_shapes.values())

    groups = {}
    for k, s in tensors.items():
        g = k.split(".")[0]
        groups[g] = groups.get(g, 0) + int(torch.Size(s).numel())

    out = {
        "model": mr.HF_REPO,
        "built_with": {
            "internvl": {"repo": mr.INTERNVL_REPO, "commit": mr.INTERNVL_COMMIT,
                         "classes": ["InternVLChatConfig", "InternVLChatModel", "InternVisionModel",
                                     "transformers Qwen2ForCausalLM"]},
            "projector": "NVLM-D mlp1 (make_reference.install_nvlm_projector)",
            "layout": "InternViT attention padded with 7 zero dummy heads (make_reference.to_published)",
            "device": "meta",
        },
        "config": cfg,
        "num_tensors": len(tensors),
        "total_parameters": total,
        "parameters_by_prefix": groups,
        "total_parameters_without_dummy_heads": unpadded,
        "public_parameter_count_billions": PUBLIC_PARAMS_BILLIONS,
        "matches_public_count": round(total / 1e9, 2) == PUBLIC_PARAMS_BILLIONS,
        "tensors": tensors,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(len(tensors), "tensors", total, "parameters", groups, "unpadded", unpadded,
          "matches public", out["matches_public_count"])


if __name__ == "__main__":
    main()
