"""ImageBind's official checkpoint -> the modules in modeling.py.

The release is one pickle, ``imagebind_huge.pth`` (dl.fbaipublicfiles.com/imagebind/), holding
``imagebind_huge().state_dict()``: 1311 tensors, the names of facebookresearch/ImageBind's
``ImageBindModel`` (commit 53680b02). It is read once with torch.load(weights_only=True) and kept
as safetensors (families/pickled.py); a folder holding a ``model.safetensors`` with the same
names (a re-upload of the state dict) loads directly. The official model takes no config file: a
folder's optional ``config.json`` {"kwargs": {...}} gives ``ImageBindModel``'s arguments (the tiny
test checkpoints use it); without one, imagebind_huge's sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlmzoo.errors import UnknownModelError
from vlmzoo.families.checkpoints import load_official
from vlmzoo.families.imagebind.modeling import ImageBind, ImageBindConfig

WEIGHTS = "imagebind_huge.pth"
PRE, TRUNK, HEAD = r"modality_preprocessors\.", r"modality_trunks\.", r"modality_heads\."
M = r"(vision|text|audio|depth|thermal|imu)"
TABLE = [
    (PRE + M + r"\.cls_token", r"encoders.\1.cls"),
    (PRE + M + r"\.(?:pos_embedding_helper\.)?pos_embed", r"encoders.\1.pos"),
    (PRE + r"vision\.rgbt_stem\.proj\.1\.weight", "encoders.vision.stem.weight"),  # [0] pads to 2 frames
    (PRE + r"text\.token_embedding\.weight", "encoders.text.stem.weight"),
    (PRE + r"text\.mask", "encoders.text.mask"),
    (PRE + r"(audio|thermal)\.rgbt_stem\.proj\.weight", r"encoders.\1.stem.weight"),
    (PRE + r"(depth)\.depth_stem\.proj\.weight", r"encoders.\1.stem.weight"),
    (PRE + r"(imu)\.imu_stem\.proj\.weight", r"encoders.\1.stem.weight"),
    (PRE + M + r"\.(?:rgbt|depth|imu)_stem\.norm_layer\.(weight|bias)", r"encoders.\1.stem_norm.\2"),
    (TRUNK + r"vision\.pre_transformer_layer\.0\.(weight|bias)", r"encoders.vision.pre_norm.\1"),
    (TRUNK + M + r"\.blocks\.(\d+)\.((?:attn|norm_1|norm_2|mlp)\..+)", r"encoders.\1.blocks.\2.\3"),
    (HEAD + r"text\.proj\.0\.(weight|bias)", r"encoders.text.head_norm.\1"),
    (HEAD + r"text\.proj\.1\.weight", r"encoders.text.head.weight"),
    (HEAD + M + r"\.0\.(weight|bias)", r"encoders.\1.head_norm.\2"),
    (HEAD + M + r"\.[23]\.weight", r"encoders.\1.head.weight"),  # imu: [2] is a dropout, so 3
    (r"modality_postprocessors\." + M + r"\.1\.log_logit_scale", r"encoders.\1.log_logit_scale"),
]


def read_config(path: Path) -> ImageBindConfig:
    file = Path(path) / "config.json"
    if not file.is_file():
        return ImageBindConfig()
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UnknownModelError(f"{file}: not valid JSON ({e})") from None
    kwargs = raw.get("kwargs", {}) if isinstance(raw, dict) else None
    if not isinstance(kwargs, dict):
        raise UnknownModelError(f"{file}: 'kwargs' must be ImageBindModel's keyword arguments")
    return ImageBindConfig.from_kwargs(kwargs)


def weights_folder(path: Path) -> Path:
    """The folder whose safetensors hold the weights: ``path`` itself, or the conversion of its
    official pickle."""
    from vlmzoo.families.pickled import converted

    path = Path(path)
    if any(path.glob("*.safetensors")):
        return path
    if (path / WEIGHTS).is_file():
        return converted(path / WEIGHTS)
    raise UnknownModelError(f"{path}: no ImageBind weights ({WEIGHTS}, or model.safetensors with its tensor names)")


def load(path: Path, *, device: str, dtype):
    import torch

    with torch.device("meta"):
        model = ImageBind(read_config(path))
    return load_official(model, weights_folder(path), TABLE, device=device, dtype=dtype)
