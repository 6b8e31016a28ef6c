"""Qwen2-VL and Qwen2.5-VL: several images of any size in one prompt, boxes as text.

- Native resolution: each image becomes (h/28) x (w/28) tokens after resizing to multiples of
  28 within the processor's [min_pixels, max_pixels]. Set ``model.image_min_pixels`` /
  ``model.image_max_pixels`` to trade detail for speed; None keeps the checkpoint's limits.
  (``max_pixels`` given to ``vlmzoo.load`` is something else: the intake limit that refuses
  oversized files before any resizing.)
- Grounding, Qwen2-VL: asked with ``Find <|object_ref_start|>phrase<|object_ref_end|>``, it
  answers ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` with coordinates normalised to [0, 1000).
- Grounding, Qwen2.5-VL: boxes are absolute pixels of the *resized* image the model saw
  (``"bbox_2d": [x1, y1, x2, y2]``); we scale them back to the original image.
"""

from __future__ import annotations

import re
from typing import ClassVar

from vlmzoo.families.chat import ChatModel
from vlmzoo.tasks import Box

_QWEN2_BOX = re.compile(
    r"(?:<\|object_ref_start\|>(?P<label>.*?)<\|object_ref_end\|>)?\s*"
    r"<\|box_start\|>\s*\(\s*(?P<x0>\d+)\s*,\s*(?P<y0>\d+)\s*\)\s*,\s*\(\s*(?P<x1>\d+)\s*,\s*(?P<y1>\d+)\s*\)\s*<\|box_end\|>"
)
_QWEN25_BOX = re.compile(
    r"\"bbox_2d\"\s*:\s*\[\s*(?P<x0>-?[\d.]+)\s*,\s*(?P<y0>-?[\d.]+)\s*,\s*(?P<x1>-?[\d.]+)\s*,\s*(?P<y1>-?[\d.]+)\s*\]"
    r"(?:\s*,\s*\"label\"\s*:\s*\"(?P<label>[^\"]*)\")?"
)
QWEN2_BOX_SCALE = 1000
# each merged visual token covers 28 x 28 pixels (14-pixel patches, 2 x 2 merge)
PIXELS_PER_GRID = 14


class Qwen2VLModel(ChatModel):
    family = "qwen2_vl"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask", "ground")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.image_min_pixels: int | None = None
        self.image_max_pixels: int | None = None

    def processor_kwargs(self) -> dict:
        if self.image_min_pixels is None and self.image_max_pixels is None:
            return {}
        size = dict(self.processor.image_processor.size)
        if self.image_min_pixels is not None:
            size["shortest_edge"] = self.image_min_pixels
        if self.image_max_pixels is not None:
            size["longest_edge"] = self.image_max_pixels
        return {"size": size}

    def position_delta(self, model, inputs):
        # M-RoPE: text after the image continues from the image grid's largest position, an
        # offset transformers keeps from the prefill as rope_deltas (on top of left padding's)
        return super().position_delta(model, inputs) + model.model.rope_deltas.reshape(-1)

    def ground_instruction(self, phrase: str) -> str:
        return f"Find <|object_ref_start|>{phrase}<|object_ref_end|>"

    def parse_boxes(self, text, size, inputs, phrase):
        return parse_qwen2_boxes(text, size, default_label=phrase)


class Qwen25VLModel(Qwen2VLModel):
    family = "qwen2_5_vl"

    def ground_instruction(self, phrase: str) -> str:
        return f"Locate {phrase} in this image and output the bbox coordinates in JSON format."

    def parse_boxes(self, text, size, inputs, phrase):
        t, h, w = (int(v) for v in inputs["image_grid_thw"][0])
        return parse_qwen25_boxes(text, size, (w * PIXELS_PER_GRID, h * PIXELS_PER_GRID), default_label=phrase)


def parse_qwen2_boxes(text: str, size: tuple[int, int], default_label: str = "") -> list[Box]:
    """Qwen2-VL box tokens -> pixel boxes in an image of ``size`` (width, height)."""
    width, height = size
    boxes = []
    for m in _QWEN2_BOX.finditer(text):
        x0, y0, x1, y1 = (int(m.group(k)) / QWEN2_BOX_SCALE for k in ("x0", "y0", "x1", "y1"))
        boxes.append(Box.from_fractions(x0, y0, x1, y1, width, height, (m.group("label") or default_label).strip()))
    return boxes


def parse_qwen25_boxes(text: str, size: tuple[int, int], seen: tuple[int, int], default_label: str = "") -> list[Box]:
    """Qwen2.5-VL JSON boxes in the resized image ``seen`` (w, h) -> pixels of the original ``size``."""
    (width, height), (seen_w, seen_h) = size, seen
    boxes = []
    for m in _QWEN25_BOX.finditer(text):
        x0, y0, x1, y1 = (float(m.group(k)) for k in ("x0", "y0", "x1", "y1"))
        boxes.append(Box.from_fractions(x0 / seen_w, y0 / seen_h, x1 / seen_w, y1 / seen_h, width, height,
                                        (m.group("label") or default_label).strip()))
    return boxes
