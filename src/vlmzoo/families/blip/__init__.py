"""BLIP (Salesforce): one family, three heads, each its own checkpoint and its own class here.

- BlipForConditionalGeneration (``BlipCaptioner``): captions, optionally continuing a prompt
  ("a picture of").
- BlipForQuestionAnswering (``BlipQuestionAnswerer``): short VQA answers.
- BlipForImageTextRetrieval (``BlipMatcher``): the image-text matching head (probability that
  a text fits an image).

``class_for`` picks the class from the checkpoint's ``architectures``; the loading hooks then
build the head transformers names. Prompt and batch formats are in processing.py; the matching
pass that runs each image's vision tower once is in modeling.py.
"""

from __future__ import annotations

from typing import ClassVar

from vlmzoo.engine.generation import GenerationOptions, timed_generate
from vlmzoo.errors import UnknownModelError
from vlmzoo.families.base import (
    VLModel,
    as_text_list,
    ask_requests,
    check_caption_prompt,
    is_single,
    single_question,
)
from vlmzoo.families.blip import processing
from vlmzoo.families.blip.modeling import itm_probabilities
from vlmzoo.families.hf import read_config
from vlmzoo.tasks import Answer, Caption, MatchScores

DEFAULT_MAX_NEW_TOKENS = 30  # BLIP captions and answers are short


class BlipModel(VLModel):
    """What the three heads share; loading picks the head's own class (``class_for``)."""

    family = "blip"
    default_batch_size: ClassVar[int] = 8

    @classmethod
    def class_for(cls, path):
        archs = read_config(path).get("architectures") or []
        head = next((HEADS[a] for a in archs if a in HEADS), None)
        if head is None:
            raise UnknownModelError(f"{path}: BLIP checkpoint with architectures {archs}; vlmzoo serves "
                                    f"{', '.join(HEADS)}")
        return head

    def _pixels(self, images):
        return processing.pixels(self.processor, images, self.device, self.dtype)

    def _generate(self, inputs: dict, opts, start: int, questions, images, prompt_tokens) -> list[Answer]:
        out, timing = timed_generate(self.model.generate, opts, **inputs)
        cfg = self.model.config.text_config
        return processing.answers(out, start, opts.stop, timing, questions=questions, images=images,
                                  prompt_tokens=prompt_tokens, decode=self.processor.batch_decode,
                                  pad_id=cfg.pad_token_id, sep_id=cfg.sep_token_id)


class BlipCaptioner(BlipModel):
    model_class: ClassVar[str] = "BlipForConditionalGeneration"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption",)

    def caption(self, images, prompt: str | None = None, **gen):
        import torch

        self.require("caption")
        opts = GenerationOptions.from_kwargs(gen, DEFAULT_MAX_NEW_TOKENS)
        check_caption_prompt(prompt)
        results = []
        with torch.inference_mode():
            for batch in self.image_batches(images):
                start_ids, start = processing.caption_start(self.processor.tokenizer, prompt, len(batch), self.device)
                answers = self._generate({"pixel_values": self._pixels(batch), **start_ids}, opts, start,
                                         [""] * len(batch), [im.name for im in batch], [start] * len(batch))
                results.extend(Caption.from_answer(a, prompt) for a in answers)
        return results[0] if is_single(images) else results


class BlipQuestionAnswerer(BlipModel):
    model_class: ClassVar[str] = "BlipForQuestionAnswering"
    tasks_served: ClassVar[tuple[str, ...]] = ("ask",)

    def ask(self, images=None, question=None, *, messages=None, **gen):
        """Short answers, one image per question (see ``base.ask_requests`` for the forms).

        A chat is accepted when it is what BLIP can answer: one user turn with one image.
        """
        import torch

        self.require("ask")
        requests, single = ask_requests(images, question, messages)
        opts = GenerationOptions.from_kwargs(gen, DEFAULT_MAX_NEW_TOKENS)
        questions = [single_question(r, self.name) for r in requests]
        loaded = [self.take_images(r.images[0])[0] for r in requests]
        tokenized = [self.processor.tokenizer(q)["input_ids"] for q in questions]
        for ids in tokenized:
            self.check_prompt_length(len(ids))
        answers: list[Answer | None] = [None] * len(questions)
        with torch.inference_mode():
            for batch in processing.equal_length_batches(tokenized, self.batch_size):
                ids = torch.tensor([tokenized[i] for i in batch], device=self.device)
                inputs = {"pixel_values": self._pixels([loaded[i] for i in batch]), "input_ids": ids,
                          "attention_mask": torch.ones_like(ids)}
                out = self._generate(inputs, opts, 1, [questions[i] for i in batch], [loaded[i].name for i in batch],
                                     [len(tokenized[i]) for i in batch])
                for i, answer in zip(batch, out):
                    answers[i] = answer
        return answers[0] if single else answers


class BlipMatcher(BlipModel):
    model_class: ClassVar[str] = "BlipForImageTextRetrieval"
    tasks_served: ClassVar[tuple[str, ...]] = ("match", "retrieve")

    def match(self, images, texts) -> MatchScores:
        """ITM probability that each text describes each image: scores[i, j]."""
        import numpy as np
        import torch

        self.require("match")
        texts = as_text_list(texts, "texts")
        loaded = self.take_images(images)
        tokens = self.processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        scores, margins = [], []
        with torch.inference_mode():
            for start in range(0, len(loaded), self.batch_size):
                pixels = self._pixels(loaded[start : start + self.batch_size])
                probs, margin = itm_probabilities(self.model, pixels, ids, mask, self.batch_size)
                scores.append(probs)
                margins.append(margin)
        return MatchScores(np.concatenate(scores), tuple(im.name for im in loaded), tuple(texts), "itm",
                           np.concatenate(margins))


# architecture in config.json -> the class serving that head
HEADS: dict[str, type[BlipModel]] = {
    "BlipForConditionalGeneration": BlipCaptioner,
    "BlipForQuestionAnswering": BlipQuestionAnswerer,
    "BlipForImageTextRetrieval": BlipMatcher,
}
