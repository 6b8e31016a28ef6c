"""Molmo (allenai Molmo-7B-D-0924 and -7B-O-0924), implemented here: caption, ask (chats
included) and point, from the official checkpoint layout, never with Hub code.

- One image per prompt, placed before the text as the official code places it; any resolution
  (a global crop plus up to 12 overlapping tiles, processing.py).
- Prompts are the official "role" format, ``" User: {text} Assistant:"``; a system message is
  put before the first user text (Molmo has no system role). ``caption`` asks "Describe this
  image." (the official long-caption prompt) unless given another instruction.
- ``point(images, phrase)`` asks "Point to {phrase}." and reads the ``<point>`` / ``<points>``
  tags of the answer (points.py) into pixels of the original image. Molmo points, it does not
  draw boxes, so it has no ``ground``.

Decoding is greedy unless sampling is asked for. The modules are in modeling.py (vision ours,
the LLM transformers' Qwen2 / OLMo 2), crops and tokens in processing.py, the checkpoint's
names in convert.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.base import is_single
from vlmzoo.families.generative import GenerativeModel
from vlmzoo.tasks import AskRequest, Grounding

CAPTION_INSTRUCTION = "Describe this image."  # the official long_caption prompt, first template


class MolmoModel(GenerativeModel):
    family = "molmo"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask", "point")
    multi_image = False
    default_batch_size: ClassVar[int] = 2  # up to 13 crops of 576 patches per image

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model.generation_config.eos_token_id = self.tokenizer.eos_token_id
        self.model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        vision = self.model.vision_backbone.config
        if self.processor.settings.base_image_input_size != vision.image_default_input_size:
            raise UnknownModelError(f"{self.path}: preprocessor crops of {self.processor.settings.base_image_input_size} "
                                    f"but a ViT for {vision.image_default_input_size}")

    # -- loading hooks: our modules, the official files ----------------------------------------

    @classmethod
    def build_model(cls, path: Path, device: str, dtype):
        from vlmzoo.families.molmo import convert

        return convert.load(path, device=device, dtype=dtype)

    @classmethod
    def load_processor(cls, path: Path):
        from vlmzoo.families.hf import load_tokenizer
        from vlmzoo.families.molmo.processing import CropSettings, MolmoProcessor

        tokenizer = load_tokenizer(path, "Molmo")
        try:
            return MolmoProcessor(tokenizer, CropSettings.from_folder(path))
        except (TypeError, ValueError) as e:
            raise UnknownModelError(f"{path}: {e}") from None

    # -- prompts --------------------------------------------------------------------------------

    def prompt(self, request: AskRequest) -> str:
        from vlmzoo.families.molmo.processing import prompt_text

        turns, system = [], []
        for m in request.messages:
            if m.role == "system":
                system.append(m.text)
            elif m.role == "user" and system and not turns:
                turns.append(("user", " ".join(system + [m.text])))
            else:
                turns.append((m.role, m.text))
        if not turns or turns[-1][0] != "user":
            raise InputError("a Molmo chat must end with a user message")
        return prompt_text(turns, self.tokenizer.eos_token)

    def caption_prompt(self, prompt: str | None) -> str:
        from vlmzoo.families.molmo.processing import prompt_text

        return prompt_text([("user", prompt or CAPTION_INSTRUCTION)], self.tokenizer.eos_token)

    def encode(self, prompts: list[str], images):
        try:
            inputs = self.processor(prompts, [[np.array(im.image) for im in per] for per in images])
        except ValueError as e:
            raise InputError(f"{self.name} cannot take this input: {e}") from None
        return inputs.to(self.device)

    # -- pointing -------------------------------------------------------------------------------

    def point(self, images, phrase: str, **gen):
        """A point on each thing ``phrase`` names, in pixels of the original image."""
        from vlmzoo.engine.generation import GenerationOptions
        from vlmzoo.families.molmo.points import parse_points

        self.require("point")
        if not isinstance(phrase, str) or not phrase.strip():
            raise InputError("phrase must be a non-empty string")
        opts = GenerationOptions.from_kwargs(gen)
        text = self.caption_prompt(f"Point to {phrase.strip()}.")
        results = []
        for im in self.take_images(images):
            raw = self._generate([text], [[im]], [phrase], opts)[0].text
            width, height = im.image.size
            results.append(Grounding(im.name, phrase, (), raw, points=tuple(parse_points(raw, width, height, phrase))))
        return results[0] if is_single(images) else results
