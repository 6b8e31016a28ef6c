"""Writes tensors-full-size.json: every state_dict name and shape of the official
imagebind_model.imagebind_huge() (the layout of the published imagebind_huge.pth), parameters
and buffers told apart, and the totals.

    python make_tensor_list.py --upstream /work/scratch/imagebind-ref      (writes beside this file)

vlmzoo's own driver, no upstream code: it imports the official package exported to the scratch
folder (see README.md) through make_reference.py's import helper and calls imagebind_huge()
(pretrained=False) under torch.device("meta"), so no memory is allocated and nothing is
initialised. One patch while it runs: SimpleTransformer turns torch.linspace(0, drop_path_rate,
num_blocks) into Python floats with .item(), which a meta tensor cannot do, so torch.linspace is
made to build that small tensor on the CPU; it is restored afterwards. A second build with
ImageBindModel(**make_reference.FULL_SIZE) must give the same names and shapes (checks that
config.json's full_size_kwargs are imagebind_huge()'s).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_reference as mr


def build_meta(fn):
    real_linspace = torch.linspace

    def cpu_linspace(*a, **k):
        k["device"] = "cpu"
        return real_linspace(*a, **k)

    torch.linspace = cpu_linspace
    try:
        with torch.device("meta"):
            return fn()
    finally:
        torch.linspace = real_linspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    up = mr.import_official(args.upstream)
    model = build_meta(lambda: up.model.imagebind_huge(pretrained=False))
    again = build_meta(lambda: mr.build_model(up, mr.FULL_SIZE))
    sd = model.state_dict()
    shapes = {k: list(v.shape) for k, v in sd.items()}
    assert shapes == {k: list(v.shape) for k, v in again.state_dict().items()}, (
        "FULL_SIZE != imagebind_huge()"
    )
    assert all(v.is_meta for v in sd.values())
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    assert set(params) | set(buffers) == set(sd) and not set(params) & set(buffers)
    per_modality = {}
    for k, p in params.items():
        m = k.split(".")[1]
        per_modality[m] = per_modality.get(m, 0) + math.prod(p.shape)
    doc = {
        "source": (
            f"github.com/{mr.UPSTREAM_REPO}@{mr.UPSTREAM_COMMIT}: imagebind_model.imagebind_huge() "
            "built on the meta device; its state_dict() is the layout imagebind_huge(pretrained=True) "
            "loads strictly from imagebind_huge.pth"
        ),
        "kwargs": mr.FULL_SIZE,
        "n_tensors": len(sd),
        "n_parameters": len(params),
        "n_buffers": len(buffers),
        "total_parameters": sum(math.prod(p.shape) for p in params.values()),
        "total_buffer_values": sum(math.prod(b.shape) for b in buffers.values()),
        "total_state_dict_values": sum(math.prod(v.shape) for v in sd.values()),
        "parameters_per_modality": per_modality,
        "buffers": {k: list(v.shape) for k, v in buffers.items()},
        "dtype": str(next(iter(sd.values())).dtype).replace("torch.", ""),
        "tensors": shapes,  # state_dict order
    }
    path = args.out / "tensors-full-size.json"
    path.write_text(json.dumps(doc, indent=0) + "\n")
    print(len(sd), "tensors", f"{doc['total_parameters']:,}", "parameters", path)


if __name__ == "__main__":
    main()
