"""Molmo's inputs: an image as a global crop plus overlapping tiles, the image tokens, and the
map from pooled patches to token positions, as the official preprocessor builds them
(github.com/allenai/molmo ``olmo/data/model_preprocessor.py``, crop mode "overlap-and-resize-c2").

- The tiling is chosen for the image less the two margins (4 patches a side at 336 px: 112 px),
  in tiles of the crop less its margins (224 px), up to ``max_crops`` tiles; the image is resized
  into ``rows * 224 + 112`` x ``cols * 224 + 112`` keeping its aspect ratio (centred, zero padding),
  and cut into 336 px tiles that overlap by 112 px. Only each tile's inner part is read, except
  at the image's edges, so the stitched grid has no seams.
- The global crop is the whole image resized the same way into 336 x 336; it comes first.
- Tokens: ``<im_start>`` + 12 rows of (12 ``<im_patch>`` + ``<im_col>``) + ``<im_end>`` for the
  global crop, then the same for the stitched grid of tiles (H rows of W patches, 2 x 2 patches
  pooled per token). The prompt is ``[BOS] image tokens " User: {text} Assistant:"``, BOS being
  the EOS token where the tokenizer has none.
- Masks, as released (``fix_image_padding`` False): each crop gets the *next* tile's fractions
  of real pixels per patch, the last crop -1; modeling.py reads them so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

IMAGE_TOKENS = ("<im_start>", "<im_end>", "<im_patch>", "<im_col>")
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
POOL = 2
PAD_INDEX = -100  # the position of a pooled patch no token reads


@dataclass(frozen=True)
class CropSettings:
    """preprocessor_config.json's image settings (the released values by default)."""
    max_crops: int = 12
    overlap_margins: tuple[int, int] = (4, 4)
    base_image_input_size: tuple[int, int] = (336, 336)
    image_token_length_w: int = 12
    image_token_length_h: int = 12
    image_patch_size: int = 14
    image_mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    image_std: tuple[float, float, float] = OPENAI_CLIP_STD

    @classmethod
    def from_folder(cls, folder: Path) -> CropSettings:
        file = Path(folder) / "preprocessor_config.json"
        if not file.is_file():
            return cls()
        raw = json.loads(file.read_text(encoding="utf-8"))
        values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
        settings = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        settings.check()
        return settings

    def check(self) -> None:
        left, right = self.overlap_margins
        if left % POOL or right % POOL or self.base_image_input_size[0] != self.base_image_input_size[1]:
            raise ValueError(f"crop settings {self}: margins must be even and crops square")
        grid = self.grid
        if (grid + POOL - 1) // POOL != self.image_token_length_h or self.image_token_length_h != self.image_token_length_w:
            raise ValueError(f"{grid} patches a side pool to {(grid + 1) // POOL} tokens, not "
                             f"{self.image_token_length_h} x {self.image_token_length_w}")

    @property
    def grid(self) -> int:
        return self.base_image_input_size[0] // self.image_patch_size

    @property
    def window(self) -> int:
        """Patches a tile contributes where both its margins are dropped."""
        return self.grid - sum(self.overlap_margins)


@dataclass
class ImageInputs:
    crops: np.ndarray  # (n_crops, patches, patch pixels) float32, normalised, global crop first
    masks: np.ndarray  # (n_crops, patches) float32: fraction of real pixels, shifted as released
    tokens: np.ndarray  # the image's tokens
    index: np.ndarray  # (n_crops, pooled tokens): position in ``tokens`` of each pooled patch, or -100


def select_tiling(h: float, w: float, tile: int, max_crops: int) -> tuple[int, int]:
    """(rows, cols) of ``tile``-pixel tiles for an h x w image: the tiling needing the least
    upscaling, else (every tiling shrinks it) the least downscaling; ties favour fewer tiles."""
    tilings = sorted(((i, j) for i in range(1, max_crops + 1) for j in range(1, max_crops + 1) if i * j <= max_crops),
                     key=lambda t: (t[0] * t[1], t[0]))
    sizes = np.array(tilings, dtype=np.float32) * tile
    with np.errstate(divide="ignore"):
        scale = (sizes / np.array([h, w], dtype=np.float32)).min(axis=-1)
    if np.all(scale < 1):
        pick = int(np.argmax(scale))
    else:
        pick = int(np.argmin(np.where(scale < 1.0, 10e9, scale)))
    return tilings[pick]


def resize_and_pad(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An (h, w, 3) uint8 image in [0, 1] floats, resized into ``size`` (h, w) keeping its
    aspect ratio (bilinear, antialiased), centred on zeros; and the mask of real pixels."""
    import torch
    import torch.nn.functional as F

    out_h, out_w = size
    h, w = image.shape[:2]
    # float32 as the training code, which (very rarely) moves the rounding
    scale = min(np.float32(out_h) / np.float32(h), np.float32(out_w) / np.float32(w))
    new_h, new_w = int(np.float32(h) * scale), int(np.float32(w) * scale)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    x = x.clamp(0.0, 1.0)[0].permute(1, 2, 0).numpy()
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    pad = ((top, out_h - new_h - top), (left, out_w - new_w - left))
    mask = np.pad(np.ones((new_h, new_w), dtype=bool), pad)
    return np.pad(x, pad + ((0, 0),)), mask


def patchify(array: np.ndarray, patch: int) -> np.ndarray:
    """(n, H, W[, C]) -> (n, patches, patch pixels), pixels in (row, column, channel) order."""
    n, h, w = array.shape[:3]
    c = array.shape[3:]
    x = array.reshape(n, h // patch, patch, w // patch, patch, *c)
    x = x.transpose(0, 1, 3, 2, 4, *range(5, 5 + len(c)))
    return x.reshape(n, (h // patch) * (w // patch), -1)


def image_inputs(image: np.ndarray, s: CropSettings, ids: dict[str, int]) -> ImageInputs:
    """The crops, masks, tokens and pooled-patch positions of one (h, w, 3) uint8 image."""
    patch, grid, window = s.image_patch_size, s.grid, s.window
    left, right = s.overlap_margins
    margin_px = patch * (left + right)
    rows, cols = select_tiling(image.shape[0] - margin_px, image.shape[1] - margin_px, window * patch, s.max_crops)
    canvas, real = resize_and_pad(image, (rows * window * patch + margin_px, cols * window * patch + margin_px))
    canvas = _normalise(canvas, s)
    crop = s.base_image_input_size[0]
    step = window * patch
    tiles = [canvas[i * step:i * step + crop, j * step:j * step + crop] for i in range(rows) for j in range(cols)]
    tile_real = [real[i * step:i * step + crop, j * step:j * step + crop] for i in range(rows) for j in range(cols)]
    whole, _ = resize_and_pad(image, s.base_image_input_size)
    crops = patchify(np.stack([_normalise(whole, s)] + tiles), patch)
    masks = patchify(np.stack(tile_real), patch).astype(np.float32).mean(axis=-1)
    masks = np.concatenate([masks, np.full((1, masks.shape[1]), -1, np.float32)])  # shifted, as released

    # which pooled rows (cols) of each tile row (col) are read, and where they land in the grid
    tokens_side = s.image_token_length_h
    row_spans, col_spans = _spans(rows, grid, left, right), _spans(cols, grid, left, right)
    height, width = sum(n for _, n in row_spans), sum(n for _, n in col_spans)
    global_tokens = _block(tokens_side, tokens_side, ids)
    tiled_tokens = _block(height, width, ids)
    tokens = np.concatenate([global_tokens, tiled_tokens])
    patch_positions = np.nonzero(tokens == ids["<im_patch>"])[0]
    index = np.full((1 + rows * cols, tokens_side, tokens_side), PAD_INDEX, dtype=np.int64)
    index[0] = patch_positions[: tokens_side * tokens_side].reshape(tokens_side, tokens_side)
    tiled = patch_positions[tokens_side * tokens_side:].reshape(height, width)
    r0 = 0
    for i, (ry, ny) in enumerate(row_spans):
        c0 = 0
        for j, (rx, nx) in enumerate(col_spans):
            index[1 + i * cols + j, ry:ry + ny, rx:rx + nx] = tiled[r0:r0 + ny, c0:c0 + nx]
            c0 += nx
        r0 += ny
    return ImageInputs(crops.astype(np.float32), masks, tokens, index.reshape(1 + rows * cols, -1))


def _spans(n: int, grid: int, left: int, right: int) -> list[tuple[int, int]]:
    """Per tile along one axis: (first pooled row read, pooled rows read). Inner margins are
    dropped; the image's outer edges keep theirs."""
    spans = []
    for k in range(n):
        start = 0 if k == 0 else left // POOL
        patches = grid - left - right + (left if k == 0 else 0) + (right if k == n - 1 else 0)
        spans.append((start, (patches + POOL - 1) // POOL))
    return spans


def _block(rows: int, cols: int, ids: dict[str, int]) -> np.ndarray:
    row = [ids["<im_patch>"]] * cols + [ids["<im_col>"]]
    return np.array([ids["<im_start>"]] + row * rows + [ids["<im_end>"]], dtype=np.int64)


def _normalise(image: np.ndarray, s: CropSettings) -> np.ndarray:
    return (image - np.array(s.image_mean, np.float32)) / np.array(s.image_std, np.float32)


def prompt_text(turns: list[tuple[str, str]], eos: str) -> str:
    """The official "role" format: ``" User: {q} Assistant:"`` per user turn; an assistant turn
    is `` {a}`` closed by EOS, as the official code tokenizes a finished answer."""
    return "".join(f" User: {text} Assistant:" if role == "user" else f" {text}{eos}" for role, text in turns)


class MolmoProcessor:
    """Prompts and images -> the model's inputs, for a batch padded on the left."""

    def __init__(self, tokenizer, settings: CropSettings):
        self.tokenizer = tokenizer
        self.settings = settings
        unknown = tokenizer.unk_token_id
        self.ids = {t: tokenizer.convert_tokens_to_ids(t) for t in IMAGE_TOKENS}
        absent = [t for t, i in self.ids.items() if i is None or i == unknown]
        if absent:
            raise ValueError(f"the tokenizer lacks Molmo's image token(s) {', '.join(absent)}")
        self.bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id

    def __call__(self, prompts: list[str], images: list[list[np.ndarray]]):
        """``images[i]``: the (h, w, 3) uint8 arrays of prompt i (none or one); they go before
        its text, after BOS."""
        from transformers import BatchFeature

        from vlmzoo.families.image_prompt import left_padded, shifted, stacked

        rows, parts = [], []
        for text, imgs in zip(prompts, images):
            if len(imgs) > 1:
                raise ValueError(f"Molmo takes one image per prompt, got {len(imgs)}")
            part = image_inputs(imgs[0], self.settings, self.ids) if imgs else None
            tokens = [] if part is None else part.tokens.tolist()
            rows.append([self.bos] + tokens + self.tokenizer.encode(text, add_special_tokens=False))
            parts.append(part)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.bos
        ids, mask, shifts = left_padded(rows, pad_id)
        out = {"input_ids": ids, "attention_mask": mask}
        if any(p is not None for p in parts):
            # crops of -1 are padding; positions move past BOS and the left padding
            out.update(pixel_values=stacked([list(p.crops) if p else [] for p in parts], -1.0),
                       image_masks=stacked([list(p.masks) if p else [] for p in parts], -1.0),
                       image_positions=stacked([shifted(list(p.index), 1 + k) if p else []
                                                for p, k in zip(parts, shifts)], PAD_INDEX))
        return BatchFeature(out)
