"""API models: a provider's HTTP API behind the same task methods as local models.

Everything providers share lives here, once: keys, requests as chats with images as data URIs,
concurrency, timing, streaming, token and cost accounting (``usage``), and one retry loop
(``retry``). A provider module (openai.py, gemini.py) says only how a chat becomes its wire
format, how its SDK sends it (plainly and streamed), and how its errors read. What an API name
can be (``openai:gpt-4o``, ``gemini:<model>``, ``openai-compatible:<base-url>#<model>``) is
read by ``vlmzoo.names``.
"""

from __future__ import annotations

import base64
import io
import os
import re
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator

from vlmzoo.engine.batching import chunks
from vlmzoo.engine.generation import GenerationOptions, TextStream, Timing, run_in_thread, trim_stop
from vlmzoo.errors import APIError, InputError, MissingAPIKeyError, VlmzooError
from vlmzoo.extras import require
from vlmzoo.families.api import retry
from vlmzoo.families.api.retry import Failure
from vlmzoo.families.api.usage import Usage, UsageMeter
from vlmzoo.families.base import VLModel, ask_requests, check_caption_prompt, check_stream, is_single
from vlmzoo.images import expand, load_image
from vlmzoo.tasks import Answer, AskRequest, Caption, ImagePart, Message
from vlmzoo.urls import public_text, public_url, url_secrets

REDACTED = "[redacted]"
_KEY_IN_QUERY = re.compile(r"(?i)\b(key=)[^&\s\"']+")

@dataclass(frozen=True)
class APITarget:
    """Which API a model object talks to: enough to identify an evaluation run without a folder."""

    provider: str  # "openai", "gemini" or "openai-compatible"
    model: str  # the provider's model id
    base_url: str  # where requests go, credentials and all (the SDK default, its environment override, or the name's)

    def identity(self) -> dict:
        """What identifies the API in a run: the base URL without its credentials (public_url),
        so two runs that differ only in a password or token are one run."""
        return {"api": self.provider, "model": self.model, "base_url": public_url(self.base_url)}

    def __repr__(self) -> str:
        return f"APITarget(provider={self.provider!r}, model={self.model!r}, base_url={public_url(self.base_url)!r})"


@dataclass(frozen=True)
class EncodedImage:
    """One image as it is sent: PNG bytes of the decoded, oriented, size-checked picture."""

    name: str
    data: bytes
    mime: str = "image/png"

    @property
    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{self.base64}"


@dataclass(frozen=True)
class Turn:
    """A chat turn in provider-neutral form: the role and its parts (text or EncodedImage)."""

    role: str
    parts: tuple

    @property
    def text(self) -> str:
        return "\n".join(p for p in self.parts if isinstance(p, str))


@dataclass(frozen=True)
class Reply:
    """What one provider call returned. Token counts are None when the server did not say."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True)
class Piece:
    """One event of a streamed reply: some text, the finish reason, or the usage (any of them)."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def encode_image(source, *, allow_urls: bool, max_pixels: int | None) -> EncodedImage:
    """An image through vlmzoo.images (validation, orientation, pixel limit), as PNG.

    PNG is lossless: the API model sees exactly the pixels a local model is given, so a
    comparison is not skewed by our own JPEG artefacts. The price is size (providers cap a
    request, Gemini at about 20 MB inline); see docs/api-models.md.
    """
    loaded = load_image(source, allow_urls=allow_urls, max_pixels=max_pixels)
    buf = io.BytesIO()
    loaded.image.save(buf, format="PNG")
    return EncodedImage(loaded.name, buf.getvalue())


def sampling(opts: GenerationOptions) -> dict:
    """The generation options as provider-neutral request fields (None left out).

    Greedy unless asked to sample, as for local models: without sampling we send temperature 0,
    because every API samples at temperature 1 by default.
    """
    fields = {"max_tokens": opts.max_new_tokens, "seed": opts.seed, "stop": list(opts.stop) or None}
    if opts.sampling:
        fields.update(temperature=opts.temperature, top_p=opts.top_p, top_k=opts.top_k)
    else:
        fields["temperature"] = 0.0
    return {k: v for k, v in fields.items() if v is not None}


class APIModel(VLModel):
    """Base of the API families: task methods over a provider's chat API."""

    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask")
    default_batch_size: ClassVar[int] = 16  # requests prepared (images encoded) at a time
    caption_instruction: ClassVar[str] = "Describe this image in one sentence."
    # what a provider module says about itself
    provider: ClassVar[str] = ""
    key_env_vars: ClassVar[tuple[str, ...]] = ()  # first one set wins
    key_hint: ClassVar[str] = ""  # how the missing-key error names the variables
    key_required: ClassVar[bool] = True
    sdk_module: ClassVar[str] = ""  # the provider's official SDK, from the api extra
    base_url_env: ClassVar[str | None] = None  # the variable the SDK itself reads for its base URL
    default_base_url: ClassVar[str | None] = None
    unsupported_options: ClassVar[tuple[str, ...]] = ("num_beams", "repetition_penalty", "min_new_tokens")
    finish_reasons: ClassVar[dict[str, str]] = {}  # provider's reason -> "stop" / "length"
    provider_options: ClassVar[dict[str, object]] = {}  # extra load() keywords and their defaults
    backoff: ClassVar[float] = 0.5  # seconds before the first retry without a Retry-After

    def __init__(self, *, target: APITarget, name: str, card=None, checkpoint=None, allow_urls: bool = False,
                 max_pixels: int | None = None, max_concurrency: int = 4, timeout: float = 60.0,
                 max_retries: int = 4, api_key: str | None = None, **options):
        name = public_text(name)  # an openai-compatible name holds its base URL: never its credentials
        super().__init__(name=name, path=None, card=card, checkpoint=checkpoint, device="api", dtype=None,
                         tasks=self.tasks_served, allow_urls=allow_urls, max_pixels=max_pixels)
        unknown = set(options) - set(self.provider_options)
        if unknown:
            known = ["max_concurrency", "timeout", "max_retries", "api_key", *self.provider_options]
            raise InputError(f"unknown option(s) {sorted(unknown)} for {name}; options: {', '.join(known)}")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise InputError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise InputError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InputError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self.target = target
        self.options = {**self.provider_options, **options}
        self.max_concurrency = max_concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.batch_size = max(self.default_batch_size, max_concurrency)
        self.price = checkpoint.price if checkpoint is not None else None
        if self.price is None and self.provider != "openai-compatible":
            warnings.warn(f"{name} has no price in the vlmzoo catalog: cost_usd will be None", stacklevel=3)
        require(self.sdk_module, "api", f"{name} (an API model)")
        key = api_key or next((os.environ[v] for v in self.key_env_vars if os.environ.get(v)), None)
        if key is None and self.key_required:
            raise MissingAPIKeyError(f"{name} needs an API key: set {self.key_hint or self.key_env_vars[0]}")
        self._secrets = tuple(s for s in {key, key.strip() if key else None, *url_secrets(target.base_url)} if s)
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._meter = UsageMeter()
        self.client = self.make_client(key)

    @classmethod
    def target_for(cls, model: str, base_url: str | None) -> APITarget:
        """Where requests for ``model`` go: the name's base URL, else the one the SDK would use."""
        if base_url is None:
            base_url = (os.environ.get(cls.base_url_env) if cls.base_url_env else None) or cls.default_base_url
        return APITarget(cls.provider, model, (base_url or "").rstrip("/"))

    def __repr__(self) -> str:
        via = self.redact(public_url(self.target.base_url))
        return f"<{type(self).__name__} {self.name} via {via} tasks={sorted(self.tasks)}>"

    @property
    def usage(self) -> Usage:
        return self._meter.snapshot()

    # -- what provider modules say --------------------------------------------------------------

    def make_client(self, api_key: str | None):  # pragma: no cover - every provider overrides
        """The SDK client, with the SDK's own retries off (see ``_with_retries``)."""
        raise NotImplementedError

    def send(self, turns: list[Turn], opts: GenerationOptions) -> Reply:  # pragma: no cover
        raise NotImplementedError

    def send_stream(self, turns: list[Turn], opts: GenerationOptions) -> Iterator[Piece]:  # pragma: no cover
        raise NotImplementedError

    def failure(self, error: Exception) -> Failure | None:  # pragma: no cover
        """The provider error ``error`` as a Failure; None if it is not one (then it propagates)."""
        raise NotImplementedError

    # -- tasks ----------------------------------------------------------------------------------

    def ask(self, images=None, question=None, *, messages=None, stream: bool = False, **gen):
        """Answer a question over images, or continue a chat (see ``base.ask_requests``).

        A batch runs at most ``max_concurrency`` requests at once. ``stream=True`` returns a
        ``TextStream`` of text pieces; its ``result`` is the Answer once it is exhausted.
        """
        self.require("ask")
        requests, single = ask_requests(images, question, messages)
        opts = self._options(gen)
        if stream:
            check_stream(requests)
            return self._stream(*self._prepare(requests[0]), opts)
        answers = self._answer_all(requests, opts)
        return answers[0] if single else answers

    def caption(self, images, prompt: str | None = None, **gen):
        """A caption per image; ``prompt`` replaces the default instruction."""
        self.require("caption")
        check_caption_prompt(prompt)
        opts = self._options(gen)
        instruction = prompt or self.caption_instruction
        requests = [AskRequest((Message("user", (ImagePart(src), instruction)),)) for src in expand(images)]
        captions = [Caption.from_answer(a, prompt) for a in self._answer_all(requests, opts)]
        return captions[0] if is_single(images) else captions

    # -- machinery ------------------------------------------------------------------------------

    def _options(self, gen: dict) -> GenerationOptions:
        opts = GenerationOptions.from_kwargs(gen)
        given = {"num_beams": opts.num_beams != 1, "repetition_penalty": opts.repetition_penalty is not None,
                 "min_new_tokens": opts.min_new_tokens is not None, "top_k": opts.top_k is not None}
        refused = [n for n in self.unsupported_options if given.get(n)]
        if refused:
            raise InputError(f"{self.name} cannot honour {', '.join(refused)}: the {self.provider} API has no such option")
        return opts

    def _prepare(self, request: AskRequest) -> tuple[list[Turn], str]:
        """The request as neutral turns with encoded images, and its question text."""
        turns = []
        for i, m in enumerate(request.messages):
            if m.role != "user" and m.images:
                raise InputError(f"messages[{i}] ({m.role}) holds an image; API models take images in user messages only")
            parts = tuple(encode_image(p.source, allow_urls=self.allow_urls, max_pixels=self.max_pixels)
                          if isinstance(p, ImagePart) else p for p in m.parts)
            turns.append(Turn(m.role, parts))
        return turns, request.question

    def _answer_all(self, requests: list[AskRequest], opts: GenerationOptions) -> list[Answer]:
        """Answers in request order; images are encoded one batch at a time to bound memory."""
        answers: list[Answer] = []
        for batch in chunks(requests, self.batch_size):
            prepared = [self._prepare(r) for r in batch]
            answers.extend(self._concurrently(lambda p: self._answer(*p, opts), prepared))
        return answers

    def _concurrently(self, work: Callable, items: list) -> list:
        if len(items) == 1:
            return [work(items[0])]
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items)), thread_name_prefix="vlmzoo-api")
        try:
            futures = [pool.submit(work, item) for item in items]
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on a failure, send nothing more

    def _answer(self, turns: list[Turn], question: str, opts: GenerationOptions) -> Answer:
        timing = Timing()
        reply = self._with_retries(lambda: self.send(turns, opts))
        timing.end = time.perf_counter()
        # ttft and decode speed are only measured for streams: a plain reply arrives all at once
        return self._result(reply, turns, question, opts, timing.end - timing.start, 0.0, 0.0)

    def _stream(self, turns: list[Turn], question: str, opts: GenerationOptions) -> TextStream:
        stream = TextStream(lambda pieces: "".join(pieces), opts.stop)

        def attempt() -> Reply:
            text, finish, prompt_tokens, completion_tokens = [], None, None, None
            for piece in self.send_stream(turns, opts):
                if piece.text:
                    if timing.first is None:
                        timing.first = time.perf_counter()
                    text.append(piece.text)
                    stream.push([piece.text])
                finish = piece.finish_reason or finish
                prompt_tokens = piece.prompt_tokens if piece.prompt_tokens is not None else prompt_tokens
                completion_tokens = piece.completion_tokens if piece.completion_tokens is not None else completion_tokens
            return Reply("".join(text), finish, prompt_tokens, completion_tokens)

        def work() -> Answer:
            # once text has reached the caller a retry would repeat it: retry only before that
            reply = self._with_retries(attempt, may_retry=lambda: timing.first is None)
            timing.end = time.perf_counter()
            return self._result(reply, turns, question, opts, timing.end - timing.start, timing.ttft(),
                                timing.decode_tokens_per_s(reply.completion_tokens or 0))

        timing = Timing()
        return run_in_thread(stream, work)

    def _result(self, reply: Reply, turns, question, opts, seconds, ttft, tokens_per_s) -> Answer:
        text, hit = trim_stop(reply.text, opts.stop)
        text = text.strip()  # as local models' answers are (and their streams, see TextStream)
        reason = "stop" if hit else self.finish_reasons.get(reply.finish_reason or "", (reply.finish_reason or "").lower())
        known = reply.prompt_tokens is not None and reply.completion_tokens is not None
        cost = self.price.cost(reply.prompt_tokens, reply.completion_tokens) if self.price and known else None
        self._meter.add_answer(reply.prompt_tokens, reply.completion_tokens, cost)
        names = tuple(p.name for t in turns for p in t.parts if isinstance(p, EncodedImage))
        return Answer(text=text, question=question, images=names, num_tokens=reply.completion_tokens or 0,
                      prompt_tokens=reply.prompt_tokens or 0, seconds=seconds, ttft=ttft,
                      tokens_per_s=tokens_per_s, finish_reason=reason, cost_usd=cost)

    def _with_retries(self, attempt: Callable, may_retry: Callable[[], bool] = lambda: True):
        """``attempt()`` through the shared retry loop (``retry.with_retries``), holding one of
        the ``max_concurrency`` slots per attempt."""

        def give_up(failure: Failure, attempts: int) -> APIError:
            return APIError(self.name, self.redact(failure.message), status=failure.status, attempts=attempts,
                            retryable=failure.retryable)

        return retry.with_retries(attempt, read_failure=self.failure, max_retries=self.max_retries,
                                  backoff=self.backoff, give_up=give_up, on_retry=self._meter.add_retry,
                                  passthrough=VlmzooError, slots=self._slots, may_retry=may_retry)

    def redact(self, text: str) -> str:
        """``text`` with every URL made public (``public_url``), and the API key, the base URL's
        credentials and any ``key=`` parameter replaced."""
        text = public_text(text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _KEY_IN_QUERY.sub(r"\1" + REDACTED, text)
