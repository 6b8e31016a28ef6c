"""Writes tensors-full-size.json: the official MiniCPM-V-2.6 model at the published full-size
config.json, built on the meta device: every state_dict name and shape, the total parameter
count, and a check against the published model.safetensors.index.json.

    python make_tensor_list.py --upstream /work/scratch/minicpmv-ref/official \
        --work /work/scratch/minicpmv-ref/work          (writes beside this file)

vlmzoo's own driver, no upstream code: it loads the official remote code (scratch folder, see
README.md) through transformers' trust_remote_code with the published config.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_reference as mr  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    upstream, work = args.upstream.resolve(), args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    mr.setup_environment(work)

    import torch
    from transformers import AutoConfig, AutoModel

    load = work / "full-size"
    if load.exists():
        shutil.rmtree(load)
    load.mkdir(parents=True)
    shutil.copyfile(upstream / "config.json", load / "config.json")
    for f in mr.OFFICIAL_CODE:
        shutil.copyfile(upstream / f, load / f)
    config = AutoConfig.from_pretrained(load, trust_remote_code=True)
    with torch.device("meta"):
        model = AutoModel.from_config(config, trust_remote_code=True, torch_dtype=torch.bfloat16)
    sd = model.state_dict()
    params = dict(model.named_parameters())
    assert set(sd) == set(params), set(sd) ^ set(params)
    shapes = {k: list(v.shape) for k, v in sd.items()}
    total = sum(math.prod(s) for s in shapes.values())

    index_path = upstream / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    names = set(index["weight_map"])
    assert names == set(shapes), (sorted(names - set(shapes)), sorted(set(shapes) - names))
    # the published shards are bfloat16: total_size = 2 bytes per value
    assert index["metadata"]["total_size"] == 2 * total, (index["metadata"], total)

    doc = {
        "source": (
            "HF openbmb/MiniCPM-V-2_6 remote code (modeling_minicpmv.MiniCPMV, see README.md) "
            "with the published config.json, built on the meta device; state_dict names as in "
            "the published checkpoint"
        ),
        "config_json_sha256": hashlib.sha256((upstream / "config.json").read_bytes()).hexdigest(),
        "checked_against": {
            "file": "model.safetensors.index.json (published)",
            "sha256": hashlib.sha256(index_path.read_bytes()).hexdigest(),
            "same_names": True,
            "total_size_bytes": index["metadata"]["total_size"],
            "total_size_equals_2_bytes_x_parameters": True,
        },
        # not in the checkpoint (N = any layer index)
        "non_persistent_buffers": sorted({
            re.sub(r"\.\d+\.", ".N.", f"{m}.{b}" if m else b) for m, mod in model.named_modules()
            for b in getattr(mod, "_non_persistent_buffers_set", ())}),
        "total_parameters": total,
        "n_tensors": len(shapes),
        "tensors": {k: shapes[k] for k in sorted(shapes)},
    }
    path = args.out / "tensors-full-size.json"
    path.write_text(json.dumps(doc, indent=0) + "\n")
    print(len(shapes), "tensors", f"{total:,}", "parameters", path)


if __name__ == "__main__":
    main()
