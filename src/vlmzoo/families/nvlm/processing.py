"""NVLM-D's inputs: InternVL's dynamic tiling and NVLM's tile-tagged image blocks.

- Tiling (InternVL ``dynamic_preprocess``, ``max_dynamic_patch`` 6): the grid of 448 px tiles
  (cols x rows, 1 to 6 tiles) whose aspect ratio is closest to the image's; on an exact tie a
  later (larger) grid wins only if the image has more than half its pixels. The image is resized
  to the grid (PIL bicubic) and cut row-major; with more than one tile the whole image resized to
  448 x 448 comes last (the thumbnail). Pixels /255, ImageNet mean and std.
- Image block: ``<Image>``, then per tile its tag and 256 ``<|vision_pad|>`` tokens, then
  ``</Image>``. Tags: ``<tile_1>`` .. ``<tile_{n-1}>``, ``<tile_global_thumbnail>`` for the last
  (a single-tile image gets only the thumbnail tag). Tags are plain text, tokenized with the
  whole prompt.
- Prompt: ChatML with the system message "You are a helpful assistant." (NVLM-D's chat(); the
  least certain fact of the port: its conversation.py was not readable, see
  tests/data/nvlm_d/README.md). An image in a message is ``<image>`` before the text; several
  images in one conversation are ``Image-1: <image>`` ... each on its own line (InternVL's
  multi-image convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

TILE = 448
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_MARK = "<image>"
CONTEXT_TOKEN = "<|vision_pad|>"
SYSTEM = "You are a helpful assistant."
TOKENS_PER_TILE = 256


@dataclass(frozen=True)
class TileSettings:
    min_tiles: int = 1
    max_tiles: int = 6
    use_thumbnail: bool = True


def tile_grid(width: int, height: int, s: TileSettings) -> tuple[int, int]:
    """(cols, rows), as InternVL's find_closest_aspect_ratio picks it."""
    ratios = sorted({(i, j) for n in range(s.min_tiles, s.max_tiles + 1) for i in range(1, n + 1)
                     for j in range(1, n + 1) if s.min_tiles <= i * j <= s.max_tiles},
                    key=lambda r: r[0] * r[1])  # the official order: area, then the set's own
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in ratios:
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * TILE * TILE * cols * rows:
            best = (cols, rows)
    return best


def tiles(image: Image.Image, s: TileSettings) -> list[Image.Image]:
    cols, rows = tile_grid(*image.size, s)
    resized = image.resize((cols * TILE, rows * TILE), resample=Image.Resampling.BICUBIC)
    out = [resized.crop((c * TILE, r * TILE, (c + 1) * TILE, (r + 1) * TILE)) for r in range(rows) for c in range(cols)]
    if s.use_thumbnail and len(out) != 1:
        out.append(image.resize((TILE, TILE), resample=Image.Resampling.BICUBIC))
    return out


def to_pixels(tile: Image.Image) -> np.ndarray:
    x = np.asarray(tile, dtype=np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def image_block(n_tiles: int) -> str:
    tags = [f"<tile_{i}>" for i in range(1, n_tiles)] + ["<tile_global_thumbnail>"]
    return "<Image>" + "".join(tag + CONTEXT_TOKEN * TOKENS_PER_TILE for tag in tags) + "</Image>"


def chatml(turns: list[tuple[str, str]], system: str = SYSTEM) -> str:
    text = f"<|im_start|>system\n{system}<|im_end|>\n"
    for role, content in turns:
        text += f"<|im_start|>{role}\n{content}<|im_end|>\n"
    return text + "<|im_start|>assistant\n"


@dataclass
class Encoded:
    ids: list[int]
    tiles: list[np.ndarray]
    positions: list[np.ndarray]  # per tile, the prompt positions of its context tokens


class NVLMProcessor:
    def __init__(self, tokenizer, settings: TileSettings):
        self.tokenizer = tokenizer
        self.settings = settings
        self.context_id = tokenizer.convert_tokens_to_ids(CONTEXT_TOKEN)
        if self.context_id is None or self.context_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer lacks NVLM-D's image context token {CONTEXT_TOKEN}")

    def encode_one(self, prompt: str, images: list[Image.Image]) -> Encoded:
        chunks = prompt.split(IMAGE_MARK)
        if len(chunks) - 1 != len(images):
            raise ValueError(f"the prompt marks {len(chunks) - 1} image(s) but {len(images)} were given")
        text, pixels = chunks[0], []
        for image, after in zip(images, chunks[1:]):
            parts = tiles(image, self.settings)
            text += image_block(len(parts)) + after
            pixels += [to_pixels(p) for p in parts]
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        where = [i for i, t in enumerate(ids) if t == self.context_id]
        if len(where) != TOKENS_PER_TILE * len(pixels):
            raise ValueError(f"the prompt's text holds {CONTEXT_TOKEN} tokens of its own")
        where = np.array(where, dtype=np.int64).reshape(-1, TOKENS_PER_TILE)
        return Encoded(ids, pixels, list(where))

    def __call__(self, prompts: list[str], images: list[list[Image.Image]]):
        from vlmzoo.families.image_prompt import image_batch

        rows = [self.encode_one(p, imgs) for p, imgs in zip(prompts, images)]
        return image_batch([r.ids for r in rows], [r.tiles for r in rows], [r.positions for r in rows],
                           self.tokenizer.pad_token_id)
