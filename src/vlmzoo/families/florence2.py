"""Florence-2: one encoder-decoder for many vision tasks, chosen by a task token.

Captions: ``<CAPTION>`` (or ``<DETAILED_CAPTION>``, ``<MORE_DETAILED_CAPTION>`` as the caption
prompt). Detection: ``<OD>``. Grounding: ``<CAPTION_TO_PHRASE_GROUNDING>phrase``; both answer
``label<loc_x0><loc_y0><loc_x1><loc_y1>`` with coordinates in 1000 bins; a bin stands for its
centre, (bin + 0.5) / 1000 of the image side, as Florence-2's own post-processing reads it.
"""

from __future__ import annotations

import re
from typing import ClassVar

from vlmzoo.errors import InputError
from vlmzoo.families.prompted import PromptedModel
from vlmzoo.tasks import Box

_LABELLED = re.compile(r"(?P<label>[^<]*)(?P<locs>(?:<loc_\d+>){4,})")
_LOC = re.compile(r"<loc_(\d+)>")
BINS = 1000
CAPTION_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")


class Florence2Model(PromptedModel):
    family = "florence2"
    model_class = "Florence2ForConditionalGeneration"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ground", "detect")
    echoes_prompt = False

    caption_text = "<CAPTION>"

    def caption_prompt(self, prompt):
        if prompt is not None and prompt not in CAPTION_TASKS:
            raise InputError(f"Florence-2 caption prompts are task tokens: {', '.join(CAPTION_TASKS)}")
        return super().caption_prompt(prompt)

    def ground_prompt(self, phrase: str) -> str:
        return f"<CAPTION_TO_PHRASE_GROUNDING>{phrase}"

    def detect_prompt(self) -> str:
        return "<OD>"

    def parse_boxes(self, text, size, inputs, phrase):
        return parse_florence2_boxes(text, size, default_label=phrase)


def parse_florence2_boxes(text: str, size: tuple[int, int], default_label: str = "") -> list[Box]:
    width, height = size
    text = text.replace("</s>", "").replace("<s>", "").replace("<pad>", "")
    boxes = []
    for m in _LABELLED.finditer(text):
        label = m.group("label").strip() or default_label
        bins = [int(b) for b in _LOC.findall(m.group("locs"))]
        for i in range(0, len(bins) - 3, 4):
            x0, y0, x1, y1 = ((b + 0.5) / BINS for b in bins[i : i + 4])
            boxes.append(Box.from_fractions(x0, y0, x1, y1, width, height, label))
    return boxes
