"""moondream2 (vikhyatk), implemented here: caption, ask (its "query"), ground (its "detect")
and point, from the official checkpoint layout, never with Hub code.

- ``caption(images, prompt)``: the prompt names the caption length, "short", "normal"
  (default) or "long", as moondream's own ``caption(length=...)`` does.
- ``ask``: one question about one image (moondream answers single questions, not chats).
- ``ground(images, phrase)``: boxes around each thing ``phrase`` names, through the region head
  (moondream's ``detect``); ``point``: a point on each (moondream's ``point``). Both in pixels of
  the original image; at most ``max_objects`` (default 50, the official default) per image.

Decoding is greedy unless sampling is asked for (moondream's own default samples at
temperature 0.5, top_p 0.3; vlmzoo keeps greedy everywhere so the same request gives the same
answer). One image is encoded per request; the modules are in modeling.py, crops and prompts in
processing.py, the loops in decoding.py, the checkpoint's names in convert.py. moondream1, the
original model, runs on the same modules (moondream1.py); ``class_for`` tells the two layouts
apart, as both config.json files say model_type "moondream1".
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from vlmzoo.engine.generation import GenerationOptions, TextStream, run_in_thread, trim_stop
from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.base import (
    VLModel,
    ask_requests,
    check_caption_prompt,
    check_stream,
    is_single,
    single_question,
)
from vlmzoo.tasks import Answer, Caption, Grounding

DEFAULT_MAX_OBJECTS = 50  # the official default
DEFAULT_CAPTION = "normal"


class MoondreamModel(VLModel):
    family = "moondream"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask", "ground", "point")
    default_batch_size: ClassVar[int] = 1  # one image per forward pass, as the official code runs it

    # -- loading hooks: our modules, the official files ----------------------------------------

    @classmethod
    def class_for(cls, path: Path):
        """moondream1's files say model_type "moondream1" too: told apart by architecture."""
        from vlmzoo.families.moondream import moondream1

        return moondream1.Moondream1Model if moondream1.is_moondream1(path) else cls

    @classmethod
    def build_model(cls, path: Path, device: str, dtype):
        from vlmzoo.families.moondream import convert

        return convert.load(path, device=device, dtype=dtype)

    @classmethod
    def load_processor(cls, path: Path):
        """The tokenizer (tokenizers' tokenizer.json). The 2025 revisions take theirs from the hub
        repo moondream/starmie-v1; a catalog checkpoint gets it laid beside the weights."""
        from tokenizers import Tokenizer

        file = Path(path) / "tokenizer.json"
        if not file.is_file():
            raise UnknownModelError(f"{path}: no tokenizer.json; moondream2's is moondream/starmie-v1's "
                                    "tokenizer.json (load the catalog id, which fetches it, or copy it in)")
        return Tokenizer.from_file(str(file))

    @property
    def tokenizer(self):
        return self.processor

    def context_tokens(self) -> int | None:
        return self.model.config.text.max_context

    # -- tasks ----------------------------------------------------------------------------------

    def caption(self, images, prompt: str | None = None, **gen):
        """A caption per image; ``prompt`` is the length: "short", "normal" or "long"."""
        from vlmzoo.families.moondream import processing

        self.require("caption")
        check_caption_prompt(prompt)
        try:
            ids = processing.caption_prompt(self.model.config.tokenizer, prompt or DEFAULT_CAPTION)
        except ValueError as e:
            raise InputError(f"{self.name}: {e}") from None
        opts = GenerationOptions.from_kwargs(gen)
        results = []
        for batch in self.image_batches(images):
            for im in batch:
                results.append(Caption.from_answer(self._answer(im, ids, "", opts), prompt))
        return results[0] if is_single(images) else results

    def ask(self, images=None, question=None, *, messages=None, stream: bool = False, **gen):
        """Answers to single questions about one image each (see ``base.ask_requests``)."""
        self.require("ask")
        requests, single = ask_requests(images, question, messages)
        opts = GenerationOptions.from_kwargs(gen)
        questions = [single_question(r, self.name) for r in requests]
        loaded = [self.take_images(r.images[0])[0] for r in requests]
        prompts = [self._prompt("query", q) for q in questions]
        if stream:
            check_stream(requests)
            text_stream = TextStream(lambda ids: self.tokenizer.decode(ids), opts.stop)
            return run_in_thread(text_stream, lambda: self._answer(loaded[0], prompts[0], questions[0], opts,
                                                                   on_tokens=text_stream.push))
        answers = [self._answer(im, p, q, opts) for im, p, q in zip(loaded, prompts, questions)]
        return answers[0] if single else answers

    def ground(self, images, phrase: str, max_objects: int = DEFAULT_MAX_OBJECTS, **gen):
        """Boxes around each thing ``phrase`` names, in pixels of the original image."""
        self.require("ground")
        return self._regions(images, phrase, boxes=True, max_objects=max_objects, gen=gen)

    def point(self, images, phrase: str, max_objects: int = DEFAULT_MAX_OBJECTS, **gen):
        """A point on each thing ``phrase`` names, in pixels of the original image."""
        self.require("point")
        return self._regions(images, phrase, boxes=False, max_objects=max_objects, gen=gen)

    # -- machinery ------------------------------------------------------------------------------

    def _prompt(self, task: str, text: str) -> list[int]:
        """The token ids of a query about ``text``, or of a detect / point prompt for the object
        ``text`` (tokenized after a space, as the official code does)."""
        from vlmzoo.families.moondream import processing

        t = self.model.config.tokenizer
        try:
            if task == "query":
                return processing.query_prompt(t, self.tokenizer.encode(text).ids)
            return processing.framed_prompt(t, task, self.tokenizer.encode(" " + text).ids)
        except ValueError as e:
            raise InputError(f"{self.name}: {e}") from None

    def _encoded(self, image, room: int):
        from vlmzoo.families.moondream import decoding

        needed = self.model.prefix_len + room
        if needed > self.model.config.text.max_context:
            raise InputError(f"prompt and budget need {needed} positions; {self.name} takes "
                             f"{self.model.config.text.max_context}")
        return decoding.encode_image(self.model, image.image, room)

    def _answer(self, image, ids: list[int], question: str, opts: GenerationOptions, on_tokens=None) -> Answer:
        import torch

        from vlmzoo.families.moondream import decoding

        generator = torch.Generator().manual_seed(opts.seed) if opts.seed is not None else None
        stop_hit = (lambda out: any(s in self.tokenizer.decode(out) for s in opts.stop)) if opts.stop else None
        with torch.inference_mode():
            encoded = self._encoded(image, len(ids) + opts.max_new_tokens + 1)
            new, reason, timing = decoding.generate_text(self.model, encoded, ids, opts, generator,
                                                         on_tokens=on_tokens, stop_hit=stop_hit)
        text, hit = trim_stop(self.tokenizer.decode(new), opts.stop)
        return Answer(text=text.strip(), question=question, images=(image.name,), num_tokens=len(new),
                      prompt_tokens=self.model.prefix_len + len(ids), seconds=timing.end - timing.start,
                      ttft=timing.ttft(), tokens_per_s=timing.decode_tokens_per_s(len(new)),
                      finish_reason="stop" if hit else reason)

    def _regions(self, images, phrase: str, *, boxes: bool, max_objects: int, gen: dict):
        import torch

        from vlmzoo.families.moondream import decoding
        from vlmzoo.tasks import Box, Point

        if not isinstance(phrase, str) or not phrase.strip():
            raise InputError("phrase must be a non-empty string")
        if not isinstance(max_objects, int) or isinstance(max_objects, bool) or max_objects < 1:
            raise InputError(f"max_objects must be an integer >= 1, got {max_objects!r}")
        opts = GenerationOptions.from_kwargs(gen)
        ids = self._prompt("detect" if boxes else "point", phrase)
        results = []
        for im in self.take_images(images):
            with torch.inference_mode():
                encoded = self._encoded(im, len(ids) + 3 * max_objects + 1)
                found = decoding.generate_regions(self.model, encoded, ids, boxes=boxes, max_objects=max_objects,
                                                  opts=opts)
            width, height = im.image.size
            if boxes:
                shapes = tuple(Box.from_fractions(*f, width, height, phrase) for f in found)
                results.append(Grounding(im.name, phrase, shapes, raw=repr(found)))
            else:
                marks = tuple(Point.from_fractions(*f, width, height, phrase) for f in found)
                results.append(Grounding(im.name, phrase, (), raw=repr(found), points=marks))
        return results[0] if is_single(images) else results
