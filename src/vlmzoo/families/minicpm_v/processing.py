"""MiniCPM-V-2.6's inputs, as its official processor builds them (HF repo openbmb/MiniCPM-V-2_6,
image_processing_minicpmv.py and processing_minicpmv.py):

- Slicing: an image over 448 x 448 pixels is cut into a grid of up to ``max_slice_nums`` (9)
  slices whose shape best matches the image's aspect ratio (log-ratio error, first on ties);
  the model sees the whole image downscaled (the "source") and then each slice, row by row.
  An image not sliced is resized (enlarged too) to about 448 x 448. Sizes are multiples of 14;
  resizes are PIL bicubic.
- Placeholders: the i-th image of a conversation becomes ``<image_id>i</image_id>`` (when
  ``use_image_id``) ``<image>`` + 64 ``<unk>`` + ``</image>``, then the slices: one line per
  grid row, each slice ``<slice>`` + 64 ``<unk>`` + ``</slice>``, lines joined by "\\n". The
  resampler's 64 tokens of each slice replace its ``<unk>`` run.
- Prompts: the checkpoint's chat template (ChatML; "You are a helpful assistant." when no
  system message is given); in a message, an image is ``(<image>./</image>)`` and the parts are
  joined by "\\n", in order.
- As released, the attention mask is ``input_ids != 0`` and padding is id 0 on the left: a
  prompt token with id 0 ("!" in the released vocabulary) is masked out. vlmzoo keeps this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_MARK = "(<image>./</image>)"
MAX_INPUT_TOKENS = 8192  # the official chat()'s max_inp_length: longer prompts are cut there
PAD_ID = 0  # the official processor pads with id 0 and masks every id 0


@dataclass(frozen=True)
class SliceSettings:
    """preprocessor_config.json's settings (the released values by default)."""
    max_slice_nums: int = 9
    scale_resolution: int = 448
    patch_size: int = 14
    use_image_id: bool = True
    image_feature_size: int = 64
    slice_mode: bool = True
    norm_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    norm_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    im_start: str = "<image>"
    im_end: str = "</image>"
    slice_start: str = "<slice>"
    slice_end: str = "</slice>"
    unk: str = "<unk>"
    im_id_start: str = "<image_id>"
    im_id_end: str = "</image_id>"

    @classmethod
    def from_folder(cls, folder: Path) -> SliceSettings:
        import json

        file = Path(folder) / "preprocessor_config.json"
        raw = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
        values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def ensure_divide(length: float, patch: int) -> int:
    return max(round(length / patch) * patch, patch)


def best_resize(size: tuple[float, float], scale: int, patch: int, upscale: bool = False) -> tuple[int, int]:
    width, height = size
    if width * height > scale * scale or upscale:
        ratio = width / height
        height = int(scale / math.sqrt(ratio))
        width = int(height * ratio)
    return ensure_divide(width, patch), ensure_divide(height, patch)


def slice_grid(size: tuple[int, int], max_slices: int, scale: int) -> tuple[int, int] | None:
    """(cols, rows) of slices for an image of ``size`` (w, h), or None when it is not sliced."""
    width, height = size
    log_ratio = math.log(width / height)
    multiple = min(math.ceil(width * height / (scale * scale)), max_slices)
    if multiple <= 1:
        return None
    grids = []
    for n in (multiple - 1, multiple, multiple + 1):
        if n == 1 or n > max_slices:
            continue
        grids += [(m, n // m) for m in range(1, n + 1) if n % m == 0]
    best, error = (1, 1), float("inf")
    for cols, rows in grids:
        e = abs(log_ratio - math.log(cols / rows))
        if e < error:
            best, error = (cols, rows), e
    return best


def slices(image: Image.Image, s: SliceSettings, max_slices: int) -> tuple[list[Image.Image], tuple[int, int] | None]:
    """The images the model sees: the source, then the grid's slices row by row; and the grid."""
    grid = slice_grid(image.size, max_slices, s.scale_resolution) if s.slice_mode else None
    if grid is None:
        size = best_resize(image.size, s.scale_resolution, s.patch_size, upscale=True)
        return [image.resize(size, resample=Image.Resampling.BICUBIC)], None
    source = image.resize(best_resize(image.size, s.scale_resolution, s.patch_size), resample=Image.Resampling.BICUBIC)
    cols, rows = grid
    width, height = ensure_divide(image.size[0], cols), ensure_divide(image.size[1], rows)
    cell = best_resize((width / cols, height / rows), s.scale_resolution, s.patch_size, upscale=True)
    refined = image.resize((cell[0] * cols, cell[1] * rows), resample=Image.Resampling.BICUBIC)
    step_w, step_h = int(refined.size[0] / cols), int(refined.size[1] / rows)
    cells = [refined.crop((x, y, x + step_w, y + step_h))
             for y in range(0, refined.size[1], step_h) for x in range(0, refined.size[0], step_w)]
    return [source] + cells, grid


def to_patches(image: Image.Image, s: SliceSettings) -> tuple[np.ndarray, tuple[int, int]]:
    """A slice as (3, patch, h*w*patch) float32 (its patches side by side, row-major) and its
    (h, w) in patches."""
    p = s.patch_size
    x = np.asarray(image, dtype=np.float32) / 255
    x = (x - np.array(s.norm_mean, np.float32)) / np.array(s.norm_std, np.float32)
    h, w = x.shape[0] // p, x.shape[1] // p
    x = x.transpose(2, 0, 1).reshape(3, h, p, w, p).transpose(0, 2, 1, 3, 4).reshape(3, p, h * w * p)
    return np.ascontiguousarray(x, dtype=np.float32), (h, w)


def placeholder(image_index: int, grid: tuple[int, int] | None, s: SliceSettings, use_image_id: bool) -> str:
    tokens = s.unk * s.image_feature_size
    text = (f"{s.im_id_start}{image_index}{s.im_id_end}" if use_image_id else "") + s.im_start + tokens + s.im_end
    if grid is not None:
        cols, rows = grid
        text += "\n".join((s.slice_start + tokens + s.slice_end) * cols for _ in range(rows))
    return text


@dataclass
class Encoded:
    ids: list[int]
    slices: list[np.ndarray]  # (3, patch, L * patch) each
    sizes: list[tuple[int, int]]
    positions: list[np.ndarray]  # per slice: the prompt positions its tokens replace


class MiniCPMVProcessor:
    """Prompts with image marks and their images -> the model's inputs, left padded."""

    def __init__(self, tokenizer, settings: SliceSettings):
        self.tokenizer = tokenizer
        self.settings = settings
        specials = (settings.im_start, settings.im_end, settings.slice_start, settings.slice_end, settings.unk)
        self.ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
        absent = [t for t, i in self.ids.items() if i is None or (t != settings.unk and i == tokenizer.unk_token_id)]
        if absent:
            raise ValueError(f"the tokenizer lacks MiniCPM-V's token(s) {', '.join(absent)}")

    def encode_one(self, prompt: str, images: list[Image.Image], max_slices: int | None = None,
                   use_image_id: bool | None = None) -> Encoded:
        s = self.settings
        chunks = prompt.split(IMAGE_MARK)
        if len(chunks) - 1 != len(images):
            raise ValueError(f"the prompt marks {len(chunks) - 1} image(s) but {len(images)} were given")
        text, pixels, sizes = chunks[0], [], []
        for i, (image, after) in enumerate(zip(images, chunks[1:])):
            parts, grid = slices(image, s, max_slices or s.max_slice_nums)
            text += placeholder(i, grid, s, s.use_image_id if use_image_id is None else use_image_id) + after
            for part in parts:
                array, size = to_patches(part, s)
                pixels.append(array)
                sizes.append(size)
        ids = self.tokenizer.encode(text, add_special_tokens=False)[:MAX_INPUT_TOKENS]
        starts = [i + 1 for i, t in enumerate(ids) if t in (self.ids[s.im_start], self.ids[s.slice_start])]
        ends = [i for i, t in enumerate(ids) if t in (self.ids[s.im_end], self.ids[s.slice_end])]
        positions = [np.arange(a, b, dtype=np.int64) for a, b in zip(starts, ends)]
        if len(positions) != len(pixels) or any(len(p) != s.image_feature_size for p in positions):
            raise ValueError("the prompt's image placeholders do not match its images (was it cut at "
                             f"{MAX_INPUT_TOKENS} tokens, or does its text hold image tokens?)")
        return Encoded(ids, pixels, sizes, positions)

    def __call__(self, prompts: list[str], images: list[list[Image.Image]], **options):
        from transformers import BatchFeature

        from vlmzoo.families.image_prompt import left_padded, shifted, stacked

        rows = [self.encode_one(p, imgs, **options) for p, imgs in zip(prompts, images)]
        ids, _, shifts = left_padded([r.ids for r in rows], PAD_ID)
        out = {"input_ids": ids, "attention_mask": (ids != PAD_ID).long()}  # as released: every id 0 masked
        if any(r.slices for r in rows):
            out.update(pixel_values=stacked([r.slices for r in rows], 0.0),
                       image_sizes=stacked([[np.array(hw, np.int64) for hw in r.sizes] for r in rows], 0),
                       image_positions=stacked([shifted(r.positions, k) for r, k in zip(rows, shifts)], -1))
        return BatchFeature(out)
