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

from itertools import groupby
from typing import ClassVar

import numpy as np

from vlmzoo.engine.batching import chunks
from vlmzoo.engine.generation import GenerationOptions, new_token_count, timed_generate, trim_stop
from vlmzoo.errors import UnknownModelError
from vlmzoo.families.base import (
    VLModel,
    as_text_list,
    ask_requests,
    check_caption_prompt,
    is_single,
    single_question,
)
from vlmzoo.families.hf import read_config
from vlmzoo.tasks import Answer, Caption, MatchScores

# architecture in config.json -> (transformers class name, tasks it serves)
HEADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "BlipForConditionalGeneration": ("BlipForConditionalGeneration", ("caption",)),
    "BlipForQuestionAnswering": ("BlipForQuestionAnswering", ("ask",)),
    "BlipForImageTextRetrieval": ("BlipForImageTextRetrieval", ("match", "retrieve")),
}
DEFAULT_MAX_NEW_TOKENS = 30  # BLIP captions and answers are short


class BlipModel(VLModel):
    family = "blip"
    default_batch_size: ClassVar[int] = 8

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        archs = read_config(path).get("architectures") or []
        head = next((a for a in archs if a in HEADS), None)
        if head is None:
            raise UnknownModelError(
                f"{path}: BLIP checkpoint with architectures {archs}; vlmzoo serves {', '.join(HEADS)}"
            )
        cls_name, tasks = HEADS[head]
        return super().from_pretrained(path, model_class=cls_name, tasks=tasks, **kwargs)

    def _pixels(self, images):
        px = self.processor.image_processor([im.image for im in images], return_tensors="pt")
        return px["pixel_values"].to(self.device, self.dtype)

    def caption(self, images, prompt: str | None = None, **gen):
        import torch

        self.require("caption")
        opts = GenerationOptions.from_kwargs(gen, DEFAULT_MAX_NEW_TOKENS)
        check_caption_prompt(prompt)
        results = []
        with torch.inference_mode():
            for batch in self.image_batches(images):
                inputs = {"pixel_values": self._pixels(batch)}
                # the decoder starts from [DEC], or from the prompt with its final [SEP] dropped
                start = 1
                if prompt:
                    text = self.processor.tokenizer([prompt] * len(batch), return_tensors="pt")
                    inputs["input_ids"] = text["input_ids"].to(self.device)
                    inputs["attention_mask"] = text["attention_mask"].to(self.device)
                    start = inputs["input_ids"].shape[1] - 1
                out, timing = timed_generate(self.model.generate, opts, **inputs)
                for im, row in zip(batch, self._rows(out, start, opts, timing, len(batch))):
                    results.append(Caption(image=im.name, prompt=prompt, prompt_tokens=start, **row))
        return results[0] if is_single(images) else results

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
        order = sorted(range(len(questions)), key=lambda i: len(tokenized[i]))
        with torch.inference_mode():
            for _, same_len in groupby(order, key=lambda i: len(tokenized[i])):
                for batch in chunks(list(same_len), self.batch_size):
                    ids = torch.tensor([tokenized[i] for i in batch], device=self.device)
                    out, timing = timed_generate(
                        self.model.generate, opts, pixel_values=self._pixels([loaded[i] for i in batch]),
                        input_ids=ids, attention_mask=torch.ones_like(ids))
                    for i, row in zip(batch, self._rows(out, 1, opts, timing, len(batch))):
                        answers[i] = Answer(question=questions[i], images=(loaded[i].name,),
                                            prompt_tokens=len(tokenized[i]), **row)
        return answers[0] if single else answers

    def _rows(self, out, start: int, opts, timing, n: int):
        """Text, token counts and timings for each generated row (BLIP echoes the decoder start)."""
        cfg = self.model.config.text_config
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        for seq, text in zip(out, texts):
            count, reason = new_token_count(seq[start:], cfg.pad_token_id, cfg.sep_token_id)
            text, hit = trim_stop(text.strip(), opts.stop)
            yield {"text": text.strip(), "num_tokens": count, "finish_reason": "stop" if hit else reason,
                   "seconds": timing.end - timing.start, "ttft": timing.ttft(),
                   "tokens_per_s": timing.decode_tokens_per_s(count) * n}

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
