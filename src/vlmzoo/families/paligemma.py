"""PaliGemma: prompted by task prefixes, boxes as ``<locNNNN>`` tokens.

Prompts (the PaliGemma model card): ``caption en``, ``answer en {question}``,
``detect {thing}``. A detection answers ``<locY0><locX0><locY1><locX1> label``, several
joined by `` ; ``; each loc is one of 1024 bins of the image height or width (value / 1024).
"""

from __future__ import annotations

import re
from typing import ClassVar

from vlmzoo.families.prompted import PromptedModel
from vlmzoo.tasks import Box

_DETECTION = re.compile(r"<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})>\s*(?P<label>[^;<]*)")
LOC_BINS = 1024


class PaliGemmaModel(PromptedModel):
    family = "paligemma"
    model_class = "PaliGemmaForConditionalGeneration"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask", "ground")
    question_format = "<image>answer en {question}"
    prompt_prefix = "<image>"
    caption_text = "caption en"  # a prompt may name another language or task: "caption es"

    def ground_prompt(self, phrase: str) -> str:
        return f"<image>detect {phrase}"

    def clean(self, text: str) -> str:
        return text.strip()

    def parse_boxes(self, text, size, inputs, phrase):
        return parse_paligemma_boxes(text, size, default_label=phrase)


def parse_paligemma_boxes(text: str, size: tuple[int, int], default_label: str = "") -> list[Box]:
    width, height = size
    boxes = []
    for m in _DETECTION.finditer(text):
        y0, x0, y1, x1 = (int(m.group(i)) / LOC_BINS for i in range(1, 5))
        boxes.append(Box.from_fractions(x0, y0, x1, y1, width, height, m.group("label").strip() or default_label))
    return boxes
