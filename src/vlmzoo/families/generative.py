"""What every image-to-text generative family shares: requests to prompts, batches, generation
with the shared options, token counts and timings, streaming, and the grounding flow.

A family says how a request becomes its prompt string (a chat template, or a prompt format
such as PaliGemma's ``caption en``), how a phrase becomes a grounding prompt, and how boxes
are read back out of the generated text. Everything else lives here, once.
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
from vlmzoo.families.base import (
    VLModel,
    ask_requests,
    check_caption_prompt,
    check_stream,
    is_single,
)
from vlmzoo.images import LoadedImage
from vlmzoo.tasks import Answer, AskRequest, Caption, Grounding


class GenerativeModel(VLModel):
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask")
    default_batch_size: ClassVar[int] = 4
    # How many images one prompt may hold when no card says (a folder loaded by path).
    multi_image: ClassVar[bool] = True
    # Decoder-only models return prompt + new tokens; encoder-decoders only the new ones.
    echoes_prompt: ClassVar[bool] = True
    model_class: ClassVar[str] = "AutoModelForImageTextToText"
    # Decode through engine/cpu/lean_decode.py where the text decoder allows (False: always generate).
    lean_decode: bool = True
    _lean = None  # LeanDecoder once built, False when the model's decoder is not one it serves

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.echoes_prompt:
            # pad on the left so every row's next token follows its own prompt
            self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    # -- what families say ----------------------------------------------------------------------

    def prompt(self, request: AskRequest) -> str:  # pragma: no cover - every family overrides
        raise NotImplementedError

    def caption_prompt(self, prompt: str | None) -> str:  # pragma: no cover
        """The model prompt that asks for a caption, continuing ``prompt`` if given."""
        raise NotImplementedError

    def ground_prompt(self, phrase: str) -> str:  # pragma: no cover - families with "ground"
        raise NotImplementedError

    def parse_boxes(self, text: str, size: tuple[int, int], inputs, phrase: str):  # pragma: no cover
        raise NotImplementedError

    def max_images(self) -> int | None:
        """Images one prompt may hold: None for any number (from the card, else the family)."""
        multi = self.card.multi_image if self.card is not None else self.multi_image
        return None if multi else 1

    def processor_kwargs(self) -> dict:
        """Extra keyword arguments for the processor call (image size limits, splitting)."""
        return {}

    def encode(self, prompts: list[str], images: list[list[LoadedImage]]):
        """Model inputs for a batch: prompts padded, images nested per prompt."""
        kwargs = dict(text=prompts, padding=True, return_tensors="pt", **self.processor_kwargs())
        bos = self.tokenizer.bos_token
        if bos and all(p.startswith(bos) for p in prompts):
            kwargs["add_special_tokens"] = False  # the template wrote the BOS already: never two
        if any(images):
            kwargs["images"] = [[im.image for im in per] for per in images]
        try:
            inputs = self.processor(**kwargs)
        except ValueError as e:  # e.g. Qwen2-VL refuses an aspect ratio over 200: the input's fault
            raise InputError(f"{self.name} cannot take this input: {e}") from None
        if "token_type_ids" in inputs and not self._accepts("token_type_ids"):
            del inputs["token_type_ids"]  # BERT-style tokenizers add them; most models refuse them
        return inputs.to(self.device)

    def _accepts(self, name: str) -> bool:
        import inspect

        return name in inspect.signature(self.model.forward).parameters

    def decode(self, ids, keep_special: bool = False) -> str:
        """Token ids -> text (family hook: MiniCPM-V drops id 0, as its official decoder does)."""
        return self.tokenizer.decode(ids, skip_special_tokens=not keep_special)

    def clean(self, text: str) -> str:
        """Family hook: tidy a decoded answer (e.g. drop a task prefix)."""
        return text.strip()

    # -- tasks ----------------------------------------------------------------------------------

    def ask(self, images=None, question=None, *, messages=None, stream: bool = False, **gen):
        """Answer a question over images, or continue a chat (see ``base.ask_requests``).

        ``stream=True`` returns a ``TextStream`` yielding text pieces as they are decoded; its
        ``result`` is the Answer once the stream is exhausted.
        """
        self.require("ask")
        requests, single = ask_requests(images, question, messages)
        opts = GenerationOptions.from_kwargs(gen)
        loaded = [self._take_request_images(r) for r in requests]
        prompts = [self.prompt(r) for r in requests]
        questions = [r.question for r in requests]
        if stream:
            check_stream(requests)
            return self._stream(prompts[0], loaded[0], questions[0], opts)
        answers = []
        for idx in chunks(range(len(requests)), self.batch_size):
            answers.extend(self._generate([prompts[i] for i in idx], [loaded[i] for i in idx],
                                          [questions[i] for i in idx], opts))
        return answers[0] if single else answers

    def caption(self, images, prompt: str | None = None, **gen):
        """A caption per image; ``prompt`` is the family's caption instruction or prefix."""
        self.require("caption")
        check_caption_prompt(prompt)
        opts = GenerationOptions.from_kwargs(gen)
        text = self.caption_prompt(prompt)
        results = []
        for batch in self.image_batches(images):
            answers = self._generate([text] * len(batch), [[im] for im in batch], [""] * len(batch), opts)
            results.extend(Caption.from_answer(a, prompt) for a in answers)
        return results[0] if is_single(images) else results

    def ground(self, images, phrase: str, **gen):
        """Boxes for ``phrase`` in each image, in pixels of the original image."""
        self.require("ground")
        if not isinstance(phrase, str) or not phrase.strip():
            raise InputError("phrase must be a non-empty string")
        return self._boxes(images, self.ground_prompt(phrase), phrase, gen)

    def detect(self, images, **gen):
        """Boxes for every object the model finds, each labelled, in pixels of the original image."""
        self.require("detect")
        return self._boxes(images, self.detect_prompt(), "", gen)

    def detect_prompt(self) -> str:  # pragma: no cover - families with "detect"
        raise NotImplementedError

    def _boxes(self, images, text: str, phrase: str, gen: dict):
        """One grounding prompt per image; boxes read back by the family's parser."""
        loaded = self.take_images(images)
        opts = GenerationOptions.from_kwargs(gen)
        results = []
        for im in loaded:
            inputs = self.encode([text], [[im]])
            raw = self._generate([text], [[im]], [phrase], opts, keep_special=True, inputs=inputs)[0].text
            results.append(Grounding(im.name, phrase, tuple(self.parse_boxes(raw, im.image.size, inputs, phrase)), raw))
        return results[0] if is_single(images) else results

    # -- machinery ------------------------------------------------------------------------------

    def _take_request_images(self, request: AskRequest) -> list[LoadedImage]:
        limit = self.max_images()
        n = len(request.images)
        if limit is not None and n > limit:
            raise InputError(f"{self.name} takes at most {limit} image(s) per prompt (per its card); got {n}")
        return [self.take_images(src)[0] for src in request.images]

    def _generate(self, prompts, images, questions, opts, on_tokens=None, keep_special=False,
                  inputs=None) -> list[Answer]:
        import torch

        inputs = inputs if inputs is not None else self.encode(prompts, images)
        prompt_len = inputs["input_ids"].shape[1]
        self.check_prompt_length(prompt_len, opts.max_new_tokens if self.echoes_prompt else 0)
        from vlmzoo.engine.cpu.lean_decode import lean_generate

        lean = self._lean_decoder(opts)
        with torch.inference_mode():
            if lean is not None:
                new, counts, timing = lean_generate(
                    self.model, lean, inputs, opts, eos_ids=self._eos_ids(), pad_id=self.tokenizer.pad_token_id,
                    position_delta=self.position_delta, on_tokens=on_tokens,
                    stop_hit=self._stop_check(opts.stop, keep_special) if opts.stop else None)
            else:
                out, timing = timed_generate(self.model.generate, opts, tokenizer=self.tokenizer,
                                             on_tokens=on_tokens, **inputs)
                new = out[:, prompt_len:] if self.echoes_prompt else out
                counts = None
        # grounding keeps special tokens: box markers are special tokens in several families
        texts = [self.decode(row, keep_special) for row in new]
        eos = self._eos_ids()
        mask = inputs.get("attention_mask")
        answers = []
        for row, (question, imgs, ids, text) in enumerate(zip(questions, images, new, texts)):
            start = 0 if self.echoes_prompt else self._decoder_start_len()
            ids = ids[start:] if counts is None else ids[: int(counts[row])]
            count, reason = new_token_count(ids, self.tokenizer.pad_token_id, eos)
            text, hit = trim_stop(text, opts.stop)
            answers.append(Answer(
                text=text.strip() if keep_special else self.clean(text), question=question,
                images=tuple(im.name for im in imgs), num_tokens=count,
                prompt_tokens=int(mask[row].sum()) if mask is not None else prompt_len,
                seconds=timing.end - timing.start, ttft=timing.ttft(),
                tokens_per_s=timing.decode_tokens_per_s(count), finish_reason="stop" if hit else reason,
            ))
        return answers

    def _lean_decoder(self, opts: GenerationOptions):
        """The lean decode loop for this model and these options, or None for ``generate``."""
        if not self.lean_decode or opts.num_beams != 1 or opts.repetition_penalty is not None:
            return None
        if self._lean is None:
            from vlmzoo.engine.cpu.lean_decode import LeanDecoder

            self._lean = LeanDecoder(self.model) if self.echoes_prompt and LeanDecoder.supports(self.model) else False
        return self._lean or None

    def position_delta(self, model, inputs):
        """Per row: rotary position minus cache index of decoded tokens (left padding shifts it)."""
        import torch

        mask = inputs.get("attention_mask")
        if mask is None:
            return torch.zeros(inputs["input_ids"].shape[0], dtype=torch.long)
        return mask.sum(-1) - mask.shape[1]

    def _stop_check(self, stop: tuple[str, ...], keep_special: bool):
        def hit(ids: list[int]) -> bool:
            text = self.decode(ids, keep_special)
            return any(s in text for s in stop)

        return hit

    def _decoder_start_len(self) -> int:
        """Encoder-decoders begin their output with the decoder start token, not generated."""
        return 1

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _stream(self, prompt, images, question, opts) -> TextStream:
        stream = TextStream(self.decode, opts.stop)
        return run_in_thread(stream, lambda: self._generate([prompt], [images], [question], opts,
                                                            on_tokens=stream.push)[0])
