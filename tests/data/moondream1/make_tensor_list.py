"""Writes tensors-full-size.json: the official moondream1 model's tensor names and shapes at its
real (full-size) configuration, built on the meta device, and the total parameter count.

    python make_tensor_list.py --upstream /work/scratch/moondream1-ref      (writes beside this file)

vlmzoo's own driver, no upstream code: it imports the official package exported to the scratch
folder (see README.md) through make_reference.py's import helper, without the tiny-size patches,
and builds ``Moondream(MoondreamConfig())`` (the configuration every published moondream1
config.json resolves to: PhiConfig defaults = Phi-1.5, vision tower hard-coded). It also records
the config.json the official code writes for that model (``MoondreamConfig.to_json_string()``,
as ``save_pretrained`` calls it, with ``architectures`` and a float16 ``torch_dtype`` set).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_reference as mr


@contextlib.contextmanager
def parameters_on_meta():
    """Every parameter moves to the meta device as it is registered (what accelerate's
    init_empty_weights does): nothing full-size is allocated or initialised. (A plain
    ``torch.device("meta")`` context fails inside timm, which calls ``.item()`` on a
    ``torch.linspace`` while building the stochastic-depth schedule.)"""
    original = torch.nn.Module.register_parameter

    def register_parameter(module, name, param):
        original(module, name, param)
        if param is not None:
            p = module._parameters[name]
            module._parameters[name] = torch.nn.Parameter(
                p.to("meta"), requires_grad=p.requires_grad)

    torch.nn.Module.register_parameter = register_parameter
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    up = mr.import_official(args.upstream.resolve())
    config = up.cfg.MoondreamConfig()
    with parameters_on_meta():
        model = up.md.Moondream(config)
    sd = model.state_dict()
    assert all(v.is_meta for v in sd.values())
    assert len(sd) == len(list(model.named_parameters())), "parameters only"
    shapes = {k: list(v.shape) for k, v in sd.items()}
    total = sum(math.prod(s) for s in shapes.values())

    config.architectures = [type(model).__name__]
    config.torch_dtype = torch.float16
    written = json.loads(config.to_json_string(use_diff=True))
    phi = model.text_model.config
    doc = {
        "source": (
            f"github.com/{mr.UPSTREAM_REPO}@{mr.UPSTREAM_COMMIT}: moondream.moondream.Moondream("
            "MoondreamConfig()) built on the meta device (text model PhiForCausalLM(PhiConfig()) = "
            "Phi-1.5; vision encoder timm vit_so400m_patch14_siglip_384 with LinearPatchEmbedding, "
            "attn_pool removed, and the 1152-8192-2048 projection MLP, all hard-coded); "
            "state_dict names as Moondream.save_pretrained writes them (the published "
            f"{mr.HF_REPO} model.safetensors layout since 2024-02-06)"
        ),
        "config_json_as_written": written,
        "phi_config_resolved": {
            k: getattr(phi, k) for k in (
                "vocab_size", "n_positions", "n_embd", "n_layer", "n_inner", "n_head",
                "n_head_kv", "rotary_dim", "activation_function", "layer_norm_epsilon",
                "pad_vocab_size_multiple", "tie_word_embeddings")
        },
        "total_parameters": total,
        "n_tensors": len(shapes),
        "tensors": {k: shapes[k] for k in sorted(shapes)},
    }
    path = args.out / "tensors-full-size.json"
    path.write_text(json.dumps(doc, indent=0) + "\n")
    print(len(shapes), "tensors", f"{total:,}", "parameters", path)


if __name__ == "__main__":
    main()
