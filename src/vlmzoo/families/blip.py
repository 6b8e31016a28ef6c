"""BLIP (Salesforce): one family, three heads, each its own checkpoint.

- BlipForConditionalGeneration: captions, optionally continuing a prompt ("a picture of").
  The decoded caption includes that prompt, as BLIP's own decode does.
- BlipForQuestionAnswering: short VQA answers. Its answer decoder attends to every question
  position with no padding mask, so questions are batched only with others of equal token
  length: a padded batch would change the answers.
- BlipForImageTextRetrieval: the image-text matching head (probability that text fits image);
  each image goes through the vision tower once, whatever the number of texts.
"""

from __future__ import annotations

import time
from itertools import groupby
from typing import ClassVar

import numpy as np

from vlmzoo.engine.batching import chunks
from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.base import VLModel, as_text_list, is_single
from vlmzoo.families.hf import load_model, load_processor, read_config
from vlmzoo.tasks import Answer, Caption, MatchScores, parse_messages

# architecture in config.json -> (transformers class name, tasks it serves)
HEADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "BlipForConditionalGeneration": ("BlipForConditionalGeneration", ("caption",)),
    "BlipForQuestionAnswering": ("BlipForQuestionAnswering", ("ask",)),
    "BlipForImageTextRetrieval": ("BlipForImageTextRetrieval", ("match", "retrieve")),
}
DEFAULT_MAX_NEW_TOKENS = 30


class BlipModel(VLModel):
    family = "blip"
    default_batch_size: ClassVar[int] = 8

    def __init__(self, *, model, processor, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.processor = processor

    @classmethod
    def from_pretrained(cls, path, *, device, dtype, **kwargs):
        import transformers

        archs = read_config(path).get("architectures") or []
        head = next((a for a in archs if a in HEADS), None)
        if head is None:
            raise UnknownModelError(
                f"{path}: BLIP checkpoint with architectures {archs}; vlmzoo serves {', '.join(HEADS)}"
            )
        cls_name, tasks = HEADS[head]
        model = load_model(getattr(transformers, cls_name), path, device=device, dtype=dtype)
        return cls(model=model, processor=load_processor(path), path=path, device=device,
                   dtype=dtype, tasks=tasks, **kwargs)

    def _pixels(self, images):
        px = self.processor.image_processor([im.image for im in images], return_tensors="pt")
        return px["pixel_values"].to(self.device, self.dtype)

    def _generation_options(self, gen: dict) -> dict:
        allowed = {"max_new_tokens", "num_beams", "min_new_tokens", "repetition_penalty"}
        unknown = set(gen) - allowed
        if unknown:
            raise InputError(f"unknown generation option(s) {sorted(unknown)}; BLIP takes {sorted(allowed)}")
        opts = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, "do_sample": False}
        opts.update(gen)
        if opts["max_new_tokens"] < 1:
            raise InputError(f"max_new_tokens must be at least 1, got {opts['max_new_tokens']}")
        return opts

    def caption(self, images, prompt: str | None = None, **gen):
        import torch

        self.require("caption")
        opts = self._generation_options(gen)
        if prompt is not None and not isinstance(prompt, str):
            raise InputError(f"prompt must be a string, got {type(prompt).__name__}")
        loaded = self.take_images(images)
        results = []
        with torch.inference_mode():
            for batch in chunks(loaded, self.batch_size):
                t0 = time.perf_counter()
                inputs = {"pixel_values": self._pixels(batch)}
                if prompt:
                    text = self.processor.tokenizer([prompt] * len(batch), return_tensors="pt")
                    inputs["input_ids"] = text["input_ids"].to(self.device)
                    inputs["attention_mask"] = text["attention_mask"].to(self.device)
                out = self.model.generate(**inputs, **opts)
                seconds = (time.perf_counter() - t0) / len(batch)
                texts = self.processor.batch_decode(out, skip_special_tokens=True)
                prompt_len = inputs["input_ids"].shape[1] - 1 if prompt else 1  # [SEP] dropped / bos
                for im, seq, text in zip(batch, out, texts):
                    n_new = int((seq[prompt_len:] != self.model.config.text_config.pad_token_id).sum())
                    results.append(Caption(text.strip(), im.name, prompt, n_new, seconds))
        return results[0] if is_single(images) else results

    def ask(self, images=None, question=None, *, messages=None, **gen):
        """One image per question. ``images`` and ``question`` are one each, or equal-length lists.

        ``messages`` is accepted when it is what BLIP can answer: one user turn with one image.
        """
        import torch

        self.require("ask")
        if messages is not None:
            if images is not None or question is not None:
                raise InputError("give either images and question, or messages, not both")
            images, question = self._single_turn(messages)
        if images is None or question is None:
            raise InputError("ask needs images and a question (or messages)")
        opts = self._generation_options(gen)
        single = is_single(images) and isinstance(question, str)
        questions = as_text_list(question, "question")
        loaded = self.take_images(images)
        if len(questions) == 1 and len(loaded) > 1:
            questions = questions * len(loaded)
        if len(questions) != len(loaded):
            raise InputError(f"{len(loaded)} images but {len(questions)} questions; give one question per image")
        tokenized = [self.processor.tokenizer(q)["input_ids"] for q in questions]
        answers: list[Answer | None] = [None] * len(questions)
        order = sorted(range(len(questions)), key=lambda i: len(tokenized[i]))
        with torch.inference_mode():
            for _, same_len in groupby(order, key=lambda i: len(tokenized[i])):
                for batch in chunks(list(same_len), self.batch_size):
                    t0 = time.perf_counter()
                    ids = torch.tensor([tokenized[i] for i in batch], device=self.device)
                    out = self.model.generate(pixel_values=self._pixels([loaded[i] for i in batch]),
                                              input_ids=ids, attention_mask=torch.ones_like(ids), **opts)
                    seconds = (time.perf_counter() - t0) / len(batch)
                    texts = self.processor.batch_decode(out, skip_special_tokens=True)
                    for i, seq, text in zip(batch, out, texts):
                        n_new = int((seq[1:] != self.model.config.text_config.pad_token_id).sum())
                        answers[i] = Answer(text.strip(), questions[i], (loaded[i].name,), n_new, seconds)
        return answers[0] if single else answers

    def _single_turn(self, messages):
        msgs = parse_messages(messages)
        if len(msgs) != 1 or msgs[0].role != "user":
            raise InputError(f"{self.name} answers one question, not a chat: got {len(msgs)} messages")
        if len(msgs[0].images) != 1:
            raise InputError(f"{self.name} takes exactly one image per question, got {len(msgs[0].images)}")
        if not msgs[0].text.strip():
            raise InputError("the message has no question text")
        return msgs[0].images[0], msgs[0].text

    def match(self, images, texts) -> MatchScores:
        """ITM probability that each text describes each image: scores[i, j]."""
        import torch

        self.require("match")
        texts = as_text_list(texts, "texts")
        loaded = self.take_images(images)
        tokens = self.processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        scores = np.zeros((len(loaded), len(texts)), dtype=np.float32)
        with torch.inference_mode():
            for start, batch in zip(range(0, len(loaded), self.batch_size), chunks(loaded, self.batch_size)):
                image_embeds = self.model.vision_model(pixel_values=self._pixels(batch)).last_hidden_state
                for b, emb in enumerate(image_embeds):
                    for t0 in range(0, len(texts), self.batch_size):
                        t_ids, t_mask = ids[t0 : t0 + self.batch_size], mask[t0 : t0 + self.batch_size]
                        enc = emb.unsqueeze(0).expand(len(t_ids), -1, -1)
                        hidden = self.model.text_encoder(
                            input_ids=t_ids, attention_mask=t_mask, encoder_hidden_states=enc,
                            encoder_attention_mask=torch.ones(enc.shape[:-1], dtype=torch.long, device=self.device),
                        ).last_hidden_state
                        probs = self.model.itm_head(hidden[:, 0, :]).float().softmax(dim=-1)[:, 1]
                        scores[start + b, t0 : t0 + len(t_ids)] = probs.cpu().numpy()
        return MatchScores(scores, tuple(im.name for im in loaded), tuple(texts), "itm")
