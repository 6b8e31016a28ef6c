"""Turning OpenAI request bodies into vlmzoo chats, options and images, within the server's limits.

Images arrive only as data URIs, or as http(s) URLs when the server allows them (then fetched
through vlmzoo.safe_fetch: public addresses only). A bare path is refused: a client must never be
able to make the server read its own files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from vlmzoo import safe_fetch
from vlmzoo.engine.generation import MAX_NEW_TOKENS_LIMIT, MIN_TEMPERATURE
from vlmzoo.images import LoadedImage, PixelLimitError, load_image
from vlmzoo.serve.errors import ServeError
from vlmzoo.serve.schemas import ChatCompletionRequest, ImagePart
from vlmzoo.tasks import ImagePart as VlmImagePart
from vlmzoo.tasks import Message



@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server. Each is checked before any model work."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_images: int = 8  # per request
    max_pixels: int = 16_000_000  # per image, after decoding
    max_request_pixels: int = 32_000_000  # all images of one request together (each held decoded)
    max_tokens: int = 2048  # new tokens per completion
    default_max_tokens: int = 256  # when the request names none
    max_inputs: int = 256  # embedding inputs per request
    max_messages: int = 64
    allow_image_urls: bool = False
    url_max_bytes: int = 20 * 1024 * 1024  # one fetched image URL
    url_timeout: float = 10.0  # seconds for a whole URL fetch, redirects included

    def __post_init__(self):
        if not 1 <= self.max_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"max_tokens must be 1..{MAX_NEW_TOKENS_LIMIT}, got {self.max_tokens}")
        for name in ("max_body_bytes", "max_images", "max_pixels", "max_request_pixels", "default_max_tokens",
                     "max_inputs", "max_messages", "url_max_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


class PixelBudget:
    """What is left of a request's ``max_request_pixels`` while its images are taken in."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.left = limits.max_request_pixels

    def take(self, url: str, where: str) -> LoadedImage:
        """One request image, decoded and checked, or a 400 naming where it was in the request.
        An image that would overdraw the budget is refused from its header, before decoding."""
        limits = self.limits
        if url.startswith(("http://", "https://")):
            if not limits.allow_image_urls:
                raise ServeError(400, f"{where}: image URLs are off on this server; send the image as a data URI "
                                      "(data:image/png;base64,...) or start the server with --allow-image-urls",
                                 param=where, code="image_url_not_allowed")
        elif not url.startswith("data:"):
            raise ServeError(400, f"{where}: an image must be a data URI or an http(s) URL, got {url[:40]!r}",
                             param=where, code="invalid_image")
        fetch = partial(safe_fetch.fetch, max_bytes=limits.url_max_bytes, timeout=limits.url_timeout)
        allowed = min(limits.max_pixels, self.left)
        try:
            image = load_image(url, allow_urls=limits.allow_image_urls, max_pixels=allowed, fetch=fetch)
        except PixelLimitError as e:
            if allowed == limits.max_pixels:
                raise
            raise ServeError(400, f"{where}: {e.reason.split(' is over')[0]}; the images of one request may hold "
                                  f"{limits.max_request_pixels:,} pixels in all and {self.left:,} are left",
                             param=where, code="invalid_image") from None
        self.left -= image.image.width * image.image.height
        return image


def check_text(length: int, max_chars: int | None, model_id: str, where: str) -> None:
    """A 400 for text longer than the model can take, found before any of it is tokenized."""
    if max_chars is not None and length > max_chars:
        raise ServeError(400, f"{where}: {length:,} characters of text; {model_id} takes at most {max_chars:,} "
                              "(derived from its context length)", param=where, code="context_length_exceeded")


def chat_of(body: ChatCompletionRequest, limits: Limits, max_chars: int | None = None) -> list[Message]:
    """The request's messages as vlmzoo Messages with images taken in (blocking: call in a thread).
    Counts are checked first: messages, images, and the characters of text (all messages
    together: they make one prompt) against ``max_chars``."""
    if len(body.messages) > limits.max_messages:
        raise ServeError(400, f"messages: {len(body.messages)} messages; this server takes at most "
                              f"{limits.max_messages}", param="messages")
    text = sum(len(m.content) if isinstance(m.content, str) else
               sum(len(p.text) for p in m.content if not isinstance(p, ImagePart)) for m in body.messages)
    check_text(text, max_chars, body.model, "messages")
    n_images = sum(isinstance(p, ImagePart) for m in body.messages if not isinstance(m.content, str)
                   for p in m.content)
    if n_images > limits.max_images:
        raise ServeError(400, f"messages: {n_images} images; this server takes at most {limits.max_images} "
                              "per request", param="messages")
    budget = PixelBudget(limits)
    out = []
    for i, m in enumerate(body.messages):
        role = "system" if m.role == "developer" else m.role
        if isinstance(m.content, str):
            parts = (m.content,)
        else:
            parts = tuple(
                p.text if not isinstance(p, ImagePart)
                else VlmImagePart(budget.take(p.image_url.url, f"messages.{i}.content.{j}.image_url"))
                for j, p in enumerate(m.content))
        if not parts or all(isinstance(p, str) and not p.strip() for p in parts):
            raise ServeError(400, f"messages.{i}: the message is empty", param=f"messages.{i}.content")
        out.append(Message(role, parts))
    if out[-1].role == "assistant":
        raise ServeError(400, "messages: the last message is the assistant's; a completion continues after a "
                              "user message", param="messages")
    return out


def options_of(body: ChatCompletionRequest, limits: Limits) -> dict:
    """Generation keyword arguments for ``ask``; a 400 for anything vlmzoo cannot honour."""
    unsupported = {
        "n": body.n != 1,
        "presence_penalty": body.presence_penalty != 0,
        "frequency_penalty": body.frequency_penalty != 0,
        "logprobs": body.logprobs,
    }
    for name, asked in unsupported.items():
        if asked:
            raise ServeError(400, f"{name}: vlmzoo serve does not support this option (leave it at its default)",
                             param=name)
    if body.max_tokens is not None and body.max_completion_tokens is not None \
            and body.max_tokens != body.max_completion_tokens:
        raise ServeError(400, "max_tokens and max_completion_tokens disagree; give one", param="max_tokens")
    asked = body.max_completion_tokens or body.max_tokens
    if asked is not None and asked > limits.max_tokens:
        which = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise ServeError(400, f"{which}: {asked} is over this server's limit of {limits.max_tokens}", param=which)
    options: dict = {"max_new_tokens": asked or min(limits.default_max_tokens, limits.max_tokens)}
    if body.temperature is not None and body.temperature >= MIN_TEMPERATURE:
        options["temperature"] = body.temperature
        if body.top_p is not None:
            options["top_p"] = body.top_p
    if body.seed is not None:
        options["seed"] = body.seed
    stop = [body.stop] if isinstance(body.stop, str) else (body.stop or [])
    if len(stop) > 4 or any(not s for s in stop):
        raise ServeError(400, "stop: up to 4 non-empty strings", param="stop")
    if stop:
        options["stop"] = stop
    return options
