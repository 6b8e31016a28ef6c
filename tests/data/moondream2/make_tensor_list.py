"""Writes tensors-full-size.json: the official MoondreamModel's tensor names and shapes at its
default (full-size) configuration, built on the meta device, with HfMoondream's "model." prefix.

    python make_tensor_list.py /work/scratch/moondream-ref > tensors.json   (then wrapped with its source)

The argument is the scratch folder holding the official package (see README.md); vlmzoo's own
driver, no upstream code.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
import tokenizers  # noqa: E402
tokenizers.Tokenizer.from_pretrained = staticmethod(lambda *a, **k: None)  # no hub here; unused for shapes
import torch  # noqa: E402
from moondream.torch.config import MoondreamConfig
from moondream.torch.moondream import MoondreamModel
with torch.device("meta"):
    m = MoondreamModel(MoondreamConfig(), setup_caches=False)
print(json.dumps({"model." + k: list(v.shape) for k, v in m.state_dict().items()}, indent=0, sort_keys=True))
