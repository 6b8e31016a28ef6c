"""Kosmos-2: grounded captions and referring expressions as patch-index tokens.

The image is a 32 x 32 grid; a box is ``<object><patch_index_A><patch_index_B></object>``
with A the top-left and B the bottom-right cell. Following Kosmos-2's own decoding, a box
spanning one cell, or one row or column of cells, covers those cells whole; otherwise it runs
from the centre of cell A to the centre of cell B.

Kosmos-2 decodes one prompt at a time: with left padding its cached positions count the pads,
so a padded batch drifts from single results (a transformers limitation).
"""

from __future__ import annotations

import re
from typing import ClassVar

from vlmzoo.families.prompted import PromptedModel
from vlmzoo.tasks import Box

_OBJECT = re.compile(r"(?:<phrase>(?P<label>.*?)</phrase>\s*)?<object>(?P<body>.*?)</object>")
_PAIR = re.compile(r"<patch_index_(\d+)>\s*<patch_index_(\d+)>")
_MARKUP = re.compile(r"</?(?:grounding|phrase|object)>|<patch_index_\d+>|</delimiter_of_multi_objects/>")


class Kosmos2Model(PromptedModel):
    family = "kosmos2"
    model_class = "Kosmos2ForConditionalGeneration"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask", "ground")
    default_batch_size: ClassVar[int] = 1
    question_format = "<grounding> Question: {question} Answer:"
    prompt_prefix = "<grounding>"
    caption_text = "An image of"

    def ground_prompt(self, phrase: str) -> str:
        return f"<grounding><phrase> {phrase}</phrase>"

    def clean(self, text: str) -> str:
        return " ".join(_MARKUP.sub("", text).split())

    def parse_boxes(self, text, size, inputs, phrase):
        side = int(round(getattr(self.processor, "num_patch_index_tokens", 1024) ** 0.5))
        return parse_kosmos2_boxes(text, size, side, default_label=phrase)


def patch_box(a: int, b: int, side: int) -> tuple[float, float, float, float]:
    """Fractions (x0, y0, x1, y1) of the box between top-left cell ``a`` and bottom-right ``b``."""
    cell = 1.0 / side
    ax, ay, bx, by = a % side, a // side, b % side, b // side
    if a == b or ax == bx or ay == by:
        return ax * cell, ay * cell, (bx + 1) * cell, (by + 1) * cell
    half = cell / 2
    return ax * cell + half, ay * cell + half, bx * cell + half, by * cell + half


def parse_kosmos2_boxes(text: str, size: tuple[int, int], side: int = 32, default_label: str = "") -> list[Box]:
    width, height = size
    boxes = []
    for obj in _OBJECT.finditer(text):
        label = (obj.group("label") or default_label).strip()
        for a, b in _PAIR.findall(obj.group("body")):
            boxes.append(Box.from_fractions(*patch_box(int(a), int(b), side), width, height, label))
    return boxes
