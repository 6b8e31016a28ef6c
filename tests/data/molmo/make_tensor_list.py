"""Writes tensors-full-size-D.json and tensors-full-size-O.json: the official Molmo's tensor names
and shapes at the released 7B-D and 7B-O configurations, built on the meta device, with the
published Hugging Face checkpoints' "model." prefix, and the total parameter count.

    python make_tensor_list.py --upstream /work/scratch/molmo-ref            (writes beside this file)

vlmzoo's own driver, no upstream code: it imports the official package exported to the scratch
folder (see README.md) through make_reference.py's import helper, builds each ModelConfig with
olmo/hf_molmo.py's mapping from the config.json fields in make_reference.FULL_SIZE, and checks
that mapping by running the official load_hf_model on the same fields (see
make_reference.validate_with_hf_molmo).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_reference as mr  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    up = mr.import_official(args.upstream)
    flags = mr.check_flags_against_launch_scripts(up)
    for variant in ("D", "O"):
        hf = mr.FULL_SIZE[variant]
        cfg = mr.model_config(up, hf, mr.VISION_FULL, mr.TOKENIZER_IDS[variant])
        model = mr.build_molmo(up, cfg, device="meta")
        shapes = mr.state_dict_shapes(model)
        assert len(shapes) == len(list(model.named_parameters())), "parameters only"
        mr.validate_with_hf_molmo(up, hf, mr.VISION_FULL, shapes, cfg)
        total = sum(math.prod(s) for s in shapes.values())
        doc = {
            "source": (
                f"github.com/{mr.UPSTREAM_REPO}@{mr.UPSTREAM_COMMIT}: olmo.model.Molmo(ModelConfig) "
                f"built on the meta device, ModelConfig from olmo/hf_molmo.py's mapping of the "
                f"{mr.HF_REPOS[variant]} config.json fields below (LLM values from "
                f"launch_scripts/utils.py LLMS['{flags[variant]['launch_scripts_llm']}'], vision "
                f"backbone fixed in hf_molmo.py), state_dict names with the published "
                f"checkpoint's 'model.' prefix"
            ),
            "config": mr.hf_config_json(variant, hf, None),
            "total_parameters": total,
            "tensors": {"model." + k: shapes[k] for k in sorted(shapes)},
        }
        path = args.out / f"tensors-full-size-{variant}.json"
        path.write_text(json.dumps(doc, indent=0) + "\n")
        print(variant, len(shapes), "tensors", f"{total:,}", "parameters", path)


if __name__ == "__main__":
    main()
