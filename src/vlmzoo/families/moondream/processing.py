"""moondream2's image crops, feature stitching, prompts and region bins.

Crops (the official overlap-crop scheme): the image is covered by a grid of 378 x 378 crops
that overlap by ``overlap_margin`` patches (4 x 14 = 56 pixels) on each inner edge. The grid is
the best (rows, cols) for the image's aspect ratio within ``max_crops`` (12); the image is
resized (Lanczos) to exactly fill it, and crop 0 is the whole image resized to 378 x 378 (the
global crop). Pixels go to [-1, 1] as (x / 255 - 0.5) / 0.5.

Stitching: each local crop's 27 x 27 patch features keep their inner part; a crop on the
image's border also keeps the margin on that side, so the grid covers the image once.

Prompts are token-id templates from the checkpoint's config (``tokenizer.templates``):
caption lengths ("short", "normal", "long"), and query / detect / point prefixes and suffixes
around the tokenized question or object (an object is tokenized with a leading space; a query
ends with its suffix twice, as the official ``query()`` makes it).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from vlmzoo.families.moondream.modeling import RegionConfig, TokenizerConfig, VisionConfig

CAPTION_LENGTHS = ("short", "normal", "long")
SIZE_BINS_LOG2_RANGE = 10.0  # size bins span 2**-10 .. 2**0 of the image side, log-spaced


def select_tiling(height: int, width: int, crop: int, max_crops: int) -> tuple[int, int]:
    """(rows, cols) of crops of usable size ``crop`` for an image of ``height`` x ``width``."""
    if height <= crop or width <= crop:
        return 1, 1
    min_rows, min_cols = math.ceil(height / crop), math.ceil(width / crop)
    if min_rows * min_cols > max_crops:
        shrink = math.sqrt(max_crops / (min_rows * min_cols))
        return max(1, math.floor(min_rows * shrink)), max(1, math.floor(min_cols * shrink))
    rows = max(math.floor(math.sqrt(max_crops * height / width)), min_rows)
    cols = max(math.floor(math.sqrt(max_crops * width / height)), min_cols)
    if rows * cols > max_crops:
        if cols > rows:
            cols = math.floor(max_crops / rows)
        else:
            rows = math.floor(max_crops / cols)
    return max(1, rows), max(1, cols)


def overlap_crops(image: Image.Image, c: VisionConfig) -> tuple[np.ndarray, tuple[int, int]]:
    """(1 + rows * cols, 378, 378, 3) uint8 crops, global first, and the (rows, cols) tiling."""
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    size, patch = c.crop_size, c.enc_patch_size
    margin = patch * c.overlap_margin
    window = (size // patch - 2 * c.overlap_margin) * patch  # the part of a crop that is its own
    rows, cols = select_tiling(height - 2 * margin, width - 2 * margin, window, c.max_crops)
    crops = np.zeros((1 + rows * cols, size, size, pixels.shape[2]), dtype=np.uint8)
    source = Image.fromarray(pixels)
    crops[0] = np.asarray(source.resize((size, size), resample=Image.Resampling.LANCZOS))
    target_h, target_w = rows * window + 2 * margin, cols * window + 2 * margin
    resized = np.asarray(source.resize((target_w, target_h), resample=Image.Resampling.LANCZOS))
    for r in range(rows):
        for col in range(cols):
            y0, x0 = r * window, col * window
            part = resized[y0 : min(y0 + size, target_h), x0 : min(x0 + size, target_w)]
            crops[1 + r * cols + col, : part.shape[0], : part.shape[1]] = part
    return crops, (rows, cols)


def single_crop(image: Image.Image, c: VisionConfig) -> np.ndarray:
    """moondream1's input: the image squeezed to one 378 x 378 crop (bicubic, aspect ratio not
    kept), as (1, 378, 378, 3) uint8."""
    size = c.crop_size
    return np.asarray(image.convert("RGB").resize((size, size), resample=Image.Resampling.BICUBIC))[None]


def normalise(crops: np.ndarray, by_reciprocal: bool = False):
    """uint8 (N, H, W, C) crops -> float32 (N, C, H, W) in [-1, 1]. ``by_reciprocal``: scaled by
    the float32 1/255 (moondream1's torchvision ToDtype), which differs from / 255 in the last bit."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2))).float()
    x = x.mul_(torch.tensor(1 / 255, dtype=torch.float32)) if by_reciprocal else x.div_(255.0)
    return x.sub_(0.5).div_(0.5)


def stitch(local, tiling: tuple[int, int], margin: int):
    """(rows * cols, g, g, D) local crop features -> one (H, W, D) grid, overlaps removed."""
    import torch

    rows, cols = tiling
    g = local.shape[1]
    inner = g - 2 * margin
    out = torch.zeros((inner * rows + 2 * margin, inner * cols + 2 * margin, local.shape[-1]),
                      dtype=local.dtype, device=local.device)
    for i, crop in enumerate(local):
        r, col = divmod(i, cols)
        y0 = 0 if r == 0 else margin
        y1 = g if r == rows - 1 else g - margin
        x0 = 0 if col == 0 else margin
        x1 = g if col == cols - 1 else g - margin
        oy, ox = r * inner + y0, col * inner + x0
        out[oy : oy + (y1 - y0), ox : ox + (x1 - x0)] = crop[y0:y1, x0:x1]
    return out


def caption_prompt(t: TokenizerConfig, length: str) -> list[int]:
    templates = t.templates.get("caption")
    if not templates:
        raise ValueError("this checkpoint has no caption prompts")
    if length not in templates:
        raise ValueError(f"caption length must be one of {', '.join(templates)}, got {length!r}")
    return list(templates[length])


def framed_prompt(t: TokenizerConfig, task: str, ids: list[int]) -> list[int]:
    """A query, detect or point prompt: the task's prefix, ``ids``, the task's suffix."""
    template = t.templates.get(task)
    if not template:
        raise ValueError(f"this checkpoint has no {task} prompt")
    return [*template["prefix"], *ids, *template["suffix"]]


def query_prompt(t: TokenizerConfig, ids: list[int]) -> list[int]:
    """A question's prompt as the official ``query()`` builds it without reasoning: the suffix
    ends it twice (it is part of the prompt, then appended again)."""
    return [*framed_prompt(t, "query", ids), *t.templates["query"]["suffix"]]


def sizes_from_bins(bins, c: RegionConfig):
    """(width, height) as fractions of the image side (float32 tensors) from their log-scale
    bins: 2 ** (bin / (n - 1) * 10 - 10) for n bins each."""
    import torch

    n = c.size_out_dim // 2
    sizes = torch.pow(2.0, bins.float() / (n - 1) * SIZE_BINS_LOG2_RANGE - SIZE_BINS_LOG2_RANGE)
    return sizes[0], sizes[1]
