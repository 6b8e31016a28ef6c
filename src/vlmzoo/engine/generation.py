"""Generation options, timing and streaming shared by every generative family.

Families turn requests into model inputs; this module owns what happens after: the options a
user may pass (validated once, here), time to first token and decode speed, stop strings, and
the streaming iterator.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field, fields

from vlmzoo.errors import InputError

DEFAULT_MAX_NEW_TOKENS = 64
MAX_NEW_TOKENS_LIMIT = 8192
# Below this a temperature is greedy decoding (dividing logits by ~0 would overflow to NaN).
MIN_TEMPERATURE = 1e-5
MAX_TEMPERATURE = 100.0  # far past uniform sampling already
# float32 holds top_p; below its smallest normal value it rounds towards 0 and masks every token.
MIN_TOP_P = 1e-30
MAX_BEAMS = 32  # each beam is a whole extra sequence of memory and compute
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 1e-3, 1e3


@dataclass(frozen=True)
class GenerationOptions:
    """What a user may ask of generation. Greedy unless ``temperature`` > 0 or ``do_sample``."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    num_beams: int = 1
    repetition_penalty: float | None = None
    min_new_tokens: int | None = None
    # set from another thread to stop generating at the next token (a server whose client left)
    cancel: threading.Event | None = field(default=None, compare=False)

    @classmethod
    def from_kwargs(cls, gen: dict, default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> "GenerationOptions":
        known = {f.name for f in fields(cls)}
        unknown = set(gen) - known
        if unknown:
            raise InputError(f"unknown generation option(s) {sorted(unknown)}; options: {sorted(known)}")
        gen = dict(gen)
        gen.setdefault("max_new_tokens", default_max_new_tokens)
        if isinstance(gen.get("stop"), str):
            gen["stop"] = (gen["stop"],)
        if gen.get("stop") is not None:
            if not isinstance(gen["stop"], (list, tuple)):
                raise InputError(f"stop must be a string or a list of strings, got {type(gen['stop']).__name__}")
            gen["stop"] = tuple(gen["stop"])
        else:
            gen.pop("stop", None)
        temperature = gen.get("temperature")
        if _is_number(temperature) and 0 < temperature < MIN_TEMPERATURE:
            gen["temperature"] = 0.0  # dividing logits by ~0 overflows: this close to 0 is greedy
        opts = cls(**gen)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Every option within the range the generation math takes, so no value reaches torch as an error."""
        _integer("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS_LIMIT)
        if not isinstance(self.do_sample, bool):
            raise InputError(f"do_sample must be true or false, got {self.do_sample!r}")
        if self.temperature is not None:
            _number("temperature", self.temperature, 0, MAX_TEMPERATURE)
        if self.top_p is not None:
            _number("top_p", self.top_p, MIN_TOP_P, 1)
        if self.top_k is not None:
            _integer("top_k", self.top_k, 1, None)
        if self.seed is not None:
            _integer("seed", self.seed, -(2**63), 2**64 - 1)  # what torch.manual_seed takes
        _integer("num_beams", self.num_beams, 1, MAX_BEAMS)
        if self.repetition_penalty is not None:
            _number("repetition_penalty", self.repetition_penalty, MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY)
        if self.min_new_tokens is not None:
            _integer("min_new_tokens", self.min_new_tokens, 0, self.max_new_tokens)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InputError(f"stop must be non-empty strings, got {list(self.stop)}")
        if self.cancel is not None and not hasattr(self.cancel, "is_set"):
            raise InputError(f"cancel must be a threading.Event, got {type(self.cancel).__name__}")

    def check_cancelled(self) -> None:
        """Raise StreamCancelled once ``cancel`` is set: called by the decode loops at every token."""
        if self.cancel is not None and self.cancel.is_set():
            raise StreamCancelled("generation cancelled: nobody is waiting for it any more")

    @property
    def sampling(self) -> bool:
        return self.do_sample or bool(self.temperature)

    def generate_kwargs(self) -> dict:
        """Keyword arguments for ``model.generate`` (stop strings are applied by us, see trim_stop)."""
        kw: dict = {"max_new_tokens": self.max_new_tokens, "do_sample": self.sampling, "num_beams": self.num_beams}
        if self.sampling:
            kw["temperature"] = self.temperature or 1.0
            kw["top_p"] = self.top_p if self.top_p is not None else 1.0
            kw["top_k"] = self.top_k if self.top_k is not None else 0
        else:
            # checkpoints ship sampling defaults in generation_config.json; greedy means greedy
            kw.update(temperature=None, top_p=None, top_k=None)
        if self.repetition_penalty is not None:
            kw["repetition_penalty"] = self.repetition_penalty
        if self.min_new_tokens is not None:
            kw["min_new_tokens"] = self.min_new_tokens
        return kw


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(name: str, value, low: float, high: float) -> None:
    if not _is_number(value) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")


def _integer(name: str, value, low: int, high: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise InputError(f"{name} must be an integer {span}, got {value}")


def pick_next(logits, opts: GenerationOptions, generator=None):
    """Next token per row of (B, V) logits: argmax, or a sample under temperature / top-k / top-p
    (``generator``: a seeded torch.Generator for repeatable samples)."""
    import torch

    if not opts.sampling:
        return logits.argmax(-1)
    logits = logits.float() / (opts.temperature or 1.0)
    if opts.top_k:
        kth = logits.topk(min(opts.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if opts.top_p is not None and opts.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= opts.top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def trim_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string; True if one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@dataclass
class Timing:
    """Wall-clock marks of one generate call: start, first new token, end."""

    start: float = field(default_factory=time.perf_counter)
    first: float | None = None
    end: float | None = None

    def ttft(self) -> float:
        return (self.first or self.end or self.start) - self.start

    def decode_tokens_per_s(self, new_tokens: int) -> float:
        if self.first is None or self.end is None or new_tokens < 2 or self.end <= self.first:
            return 0.0
        return (new_tokens - 1) / (self.end - self.first)


class TimingStreamer:
    """A ``generate`` streamer that records when the first new token arrives.

    ``generate`` calls ``put`` once with the prompt, then once per decoding step; an optional
    ``on_tokens`` callback receives each step's token ids (batch 1) for streaming.
    """

    def __init__(self, timing: Timing, on_tokens=None, has_prompt: bool = True, opts: "GenerationOptions | None" = None):
        self.timing = timing
        self.on_tokens = on_tokens
        self.opts = opts
        self._skip = has_prompt

    def put(self, value):
        if self.opts is not None:
            self.opts.check_cancelled()
        if self._skip:  # the prompt itself
            self._skip = False
            return
        if self.timing.first is None:
            self.timing.first = time.perf_counter()
        if self.on_tokens is not None:
            self.on_tokens(value.reshape(-1).tolist())

    def end(self):
        self.timing.end = time.perf_counter()


class StreamCancelled(Exception):
    """Nobody waits for the output any more (a stream's reader, or a server's client, went away):
    generation stops at its next token."""


class TextStream:
    """Iterates over text pieces as they are decoded; ``result`` holds the final answer.

    The pieces join to ``result.text``: like answers, the stream is stripped of leading and
    trailing whitespace.

    The producer runs ``generate`` in a thread and calls ``push`` with token ids; each push
    decodes everything so far and emits what is new, so word pieces and multi-byte characters
    come out whole. One limit: if a model emits bytes that are not valid UTF-8, the final
    decode can show replacement characters where earlier bytes were already streamed.
    """

    _DONE = object()

    def __init__(self, decode, stop: tuple[str, ...] = ()):
        self._decode = decode
        self._stop = stop
        self._queue: queue.Queue = queue.Queue()
        self._ids: list[int] = []
        self._emitted = ""
        self._stopped = False
        self._cancelled = False
        self.result = None
        self._error: BaseException | None = None

    def cancel(self) -> None:
        """Stop generating: the producer's next push raises StreamCancelled, ending generate."""
        self._cancelled = True

    def push(self, ids: list[int]) -> None:
        if self._cancelled:
            raise StreamCancelled("stream cancelled by its consumer")
        if self._stopped:
            return
        self._ids.extend(ids)
        # answers are stripped, so a stream never shows leading whitespace
        text = self._decode(self._ids).lstrip()
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            return
        text, hit = trim_stop(text, self._stop) if self._stop else (text, False)
        if hit:
            self._stopped = True
        elif self._stop:
            # hold back what could be the start of a stop string
            hold = max((len(s) - 1 for s in self._stop), default=0)
            text = text[: max(len(self._emitted), len(text) - hold)]
        text = text.rstrip()  # and trailing whitespace waits until text follows it
        if len(text) > len(self._emitted) and text.startswith(self._emitted):
            self._queue.put(text[len(self._emitted):])
            self._emitted = text

    def finish(self, result=None, error: BaseException | None = None) -> None:
        self.result, self._error = result, error
        if result is not None and len(result.text) > len(self._emitted) and result.text.startswith(self._emitted):
            self._queue.put(result.text[len(self._emitted):])  # whatever was held back
        self._queue.put(self._DONE)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._DONE:
                if self._error is not None:
                    raise self._error
                return
            yield item


def run_in_thread(stream: TextStream, work) -> TextStream:
    """Run ``work()`` (which returns the final result) in a thread feeding ``stream``."""

    def target():
        try:
            stream.finish(result=work())
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer's thread
            stream.finish(error=e)

    threading.Thread(target=target, daemon=True, name="vlmzoo-generate").start()
    return stream


def timed_generate(generate, opts: GenerationOptions, *, tokenizer=None, on_tokens=None, **inputs):
    """``generate(**inputs)`` with the user's options, seeded if asked, and timed.

    Returns (output ids, Timing). Stop strings end a row early inside generate (per row in a
    batch); the caller still trims the decoded text with ``trim_stop``.
    """
    import torch

    timing = Timing()
    kw = opts.generate_kwargs()
    if opts.stop and tokenizer is not None:
        kw.update(stop_strings=list(opts.stop), tokenizer=tokenizer)
    if opts.num_beams == 1:  # transformers refuses streamers with beam search (so beams are not cancellable)
        kw["streamer"] = TimingStreamer(timing, on_tokens, opts=opts)
    with torch.random.fork_rng(devices=[]):
        if opts.seed is not None:
            torch.manual_seed(opts.seed)
        out = generate(**inputs, **kw)
    timing.end = timing.end or time.perf_counter()
    return out, timing


def new_token_count(new_ids, pad_id: int | None, eos_ids) -> tuple[int, str]:
    """Tokens a row really generated (padding after its end dropped) and why it ended.

    ``new_ids``: the row's ids after the prompt. ``eos_ids``: an id or a collection of ids.
    """
    ids = [int(t) for t in new_ids]
    eos = {eos_ids} if isinstance(eos_ids, int) else set(eos_ids or ())
    for i, t in enumerate(ids):
        if t in eos:
            return i + 1, "stop"
    while ids and pad_id is not None and ids[-1] == pad_id and pad_id not in eos:
        ids.pop()
    return len(ids), "length"
