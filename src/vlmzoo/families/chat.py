"""Shared logic of chat models: checkpoints whose processor carries a chat template.

LLaVA, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Idefics3/SmolVLM, Gemma 3 and Llama 3.2 Vision all
load as ``AutoModelForImageTextToText`` with a processor that turns chat messages into a prompt
and images into pixel inputs. This class does that once: requests to prompts, left-padded
batches, generation with the shared options, timings, streaming. A family module only states
what differs (processor options, how many images a prompt may hold, box formats).
"""

from __future__ import annotations

from typing import ClassVar

from vlmzoo.engine.batching import chunks
from vlmzoo.engine.generation import (
    GenerationOptions,
    TextStream,
    new_token_count,
    run_in_thread,
    timed_generate,
    trim_stop,
)
from vlmzoo.errors import InputError
from vlmzoo.families.base import VLModel, ask_requests, is_single
from vlmzoo.families.hf import load_model, load_processor
from vlmzoo.tasks import Answer, AskRequest, Caption, ImagePart, Message


class ChatModel(VLModel):
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask")
    default_batch_size: ClassVar[int] = 4
    # Used when no card says otherwise (a folder loaded by path).
    multi_image: ClassVar[bool] = True
    caption_prompt: ClassVar[str] = "Describe this image in one sentence."

    def __init__(self, *, model, processor, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.processor = processor
        # decoder-only: pad on the left so every row's next token follows its own prompt
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def from_pretrained(cls, path, *, device, dtype, **kwargs):
        from transformers import AutoModelForImageTextToText

        model = load_model(AutoModelForImageTextToText, path, device=device, dtype=dtype)
        return cls(model=model, processor=load_processor(path), path=path, device=device,
                   dtype=dtype, tasks=cls.tasks_served, **kwargs)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    # -- what families may change ---------------------------------------------------------------

    def max_images(self) -> int | None:
        """Images one prompt may hold: None for any number, else the limit (from the card)."""
        multi = self.card.multi_image if self.card is not None else self.multi_image
        return None if multi else 1

    def processor_kwargs(self) -> dict:
        """Extra keyword arguments for the processor call (image size limits, splitting)."""
        return {}

    def chat_messages(self, request: AskRequest) -> list[dict]:
        """Messages in the transformers chat format: images as ``{"type": "image"}`` parts."""
        out = []
        for m in request.messages:
            parts = [{"type": "image"} if isinstance(p, ImagePart) else {"type": "text", "text": p} for p in m.parts]
            out.append({"role": m.role, "content": parts})
        return out

    def prompt(self, request: AskRequest) -> str:
        return self.processor.apply_chat_template(self.chat_messages(request), add_generation_prompt=True,
                                                  tokenize=False)

    def encode(self, requests: list[AskRequest], images: list[list]):
        """Model inputs for a batch: prompts padded on the left, images nested per request."""
        kwargs = dict(text=[self.prompt(r) for r in requests], padding=True, return_tensors="pt",
                      **self.processor_kwargs())
        if any(images):
            kwargs["images"] = [[im.image for im in per] for per in images]
        inputs = self.processor(**kwargs)
        return inputs.to(self.device)

    # -- tasks ----------------------------------------------------------------------------------

    def ask(self, images=None, question=None, *, messages=None, stream: bool = False, **gen):
        """Answer a question over images, or continue a chat. ``stream=True`` returns a
        ``TextStream`` yielding text pieces as they are decoded (its ``result`` is the Answer)."""
        self.require("ask")
        requests, single = ask_requests(images, question, messages)
        opts = GenerationOptions.from_kwargs(gen)
        loaded = [self._take_request_images(r) for r in requests]
        if stream:
            if len(requests) != 1:
                raise InputError("stream=True takes one request, not a batch")
            return self._stream(requests[0], loaded[0], opts)
        answers = []
        for idx in chunks(range(len(requests)), self.batch_size):
            answers.extend(self._generate([requests[i] for i in idx], [loaded[i] for i in idx], opts))
        return answers[0] if single else answers

    def caption(self, images, prompt: str | None = None, **gen):
        """A caption per image: the family's caption prompt, or ``prompt``, asked of each."""
        self.require("caption")
        if prompt is not None and not isinstance(prompt, str):
            raise InputError(f"prompt must be a string, got {type(prompt).__name__}")
        loaded = self.take_images(images)
        text = prompt or self.caption_prompt
        requests = [AskRequest((Message("user", (ImagePart(im), text)),)) for im in loaded]
        opts = GenerationOptions.from_kwargs(gen)
        results = []
        for idx in chunks(range(len(requests)), self.batch_size):
            for i, a in zip(idx, self._generate([requests[i] for i in idx], [[loaded[i]] for i in idx], opts)):
                results.append(Caption(a.text, loaded[i].name, prompt, a.num_tokens, a.prompt_tokens,
                                       a.seconds, a.ttft, a.tokens_per_s, a.finish_reason))
        return results[0] if is_single(images) else results

    # -- machinery ------------------------------------------------------------------------------

    def _take_request_images(self, request: AskRequest) -> list:
        limit = self.max_images()
        n = len(request.images)
        if limit is not None and n > limit:
            raise InputError(f"{self.name} takes at most {limit} image(s) per prompt (per its card); got {n}")
        return [self.take_images(src)[0] for src in request.images]

    def _generate(self, requests, images, opts, on_tokens=None) -> list[Answer]:
        import torch

        inputs = self.encode(requests, images)
        prompt_len = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out, timing = timed_generate(self.model.generate, opts, tokenizer=self.tokenizer,
                                         on_tokens=on_tokens, **inputs)
        new = out[:, prompt_len:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        eos = self._eos_ids()
        mask = inputs.get("attention_mask")
        answers = []
        for row, (req, imgs, ids, text) in enumerate(zip(requests, images, new, texts)):
            count, reason = new_token_count(ids, self.tokenizer.pad_token_id, eos)
            text, hit = trim_stop(text, opts.stop)
            answers.append(Answer(
                text=text.strip(), question=req.question, images=tuple(im.name for im in imgs),
                num_tokens=count, prompt_tokens=int(mask[row].sum()) if mask is not None else prompt_len,
                seconds=timing.end - timing.start, ttft=timing.ttft(),
                tokens_per_s=timing.decode_tokens_per_s(count), finish_reason="stop" if hit else reason,
            ))
        return answers

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _stream(self, request, images, opts) -> TextStream:
        stream = TextStream(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True), opts.stop)
        return run_in_thread(stream, lambda: self._generate([request], [images], opts, on_tokens=stream.push)[0])
