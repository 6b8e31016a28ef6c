"""Turning OpenAI request bodies into vlmzoo chats, options and images, within the server's limits.

Images arrive only as data URIs, or as http(s) URLs when the server allows them (then fetched
through vlmzoo.safe_fetch: public addresses only). A bare path is refused: a client must never be
able to make the server read its own files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from vlmzoo import safe_fetch
from vlmzoo.engine.generation import MAX_NEW_TOKENS_LIMIT
from vlmzoo.images import LoadedImage, load_image
from vlmzoo.serve.errors import ServeError
from vlmzoo.serve.schemas import ChatCompletionRequest, ImagePart
from vlmzoo.tasks import ImagePart as VlmImagePart
from vlmzoo.tasks import Message


# Below this a temperature is greedy decoding (dividing logits by ~0 would overflow to NaN).
MIN_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server. Each is checked before any model work."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_images: int = 8  # per request
    max_pixels: int = 16_000_000  # per image, after decoding
    max_tokens: int = 2048  # new tokens per completion
    default_max_tokens: int = 256  # when the request names none
    max_inputs: int = 256  # embedding inputs per request
    max_messages: int = 64
    allow_image_urls: bool = False
    url_max_bytes: int = 20 * 1024 * 1024  # one fetched image URL
    url_timeout: float = 10.0  # seconds for a whole URL fetch, redirects included

    def __post_init__(self):
        if not 1 <= self.max_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"max_tokens must be 1..{MAX_NEW_TOKENS_LIMIT}")


def take_image(url: str, limits: Limits, where: str) -> LoadedImage:
    """One request image, decoded and checked, or a 400 naming where it was in the request."""
    if url.startswith(("http://", "https://")):
        if not limits.allow_image_urls:
            raise ServeError(400, f"{where}: image URLs are off on this server; send the image as a data URI "
                                  "(data:image/png;base64,...) or start the server with --allow-image-urls",
                             param=where, code="image_url_not_allowed")
    elif not url.startswith("data:"):
        raise ServeError(400, f"{where}: an image must be a data URI or an http(s) URL, got {url[:40]!r}",
                         param=where, code="invalid_image")
    fetch = partial(safe_fetch.fetch, max_bytes=limits.url_max_bytes, timeout=limits.url_timeout)
    return load_image(url, allow_urls=limits.allow_image_urls, max_pixels=limits.max_pixels, fetch=fetch)


def chat_of(body: ChatCompletionRequest, limits: Limits) -> list[Message]:
    """The request's messages as vlmzoo Messages with images taken in (blocking: call in a thread)."""
    if len(body.messages) > limits.max_messages:
        raise ServeError(400, f"messages: {len(body.messages)} messages; this server takes at most "
                              f"{limits.max_messages}", param="messages")
    n_images = sum(isinstance(p, ImagePart) for m in body.messages if not isinstance(m.content, str)
                   for p in m.content)
    if n_images > limits.max_images:
        raise ServeError(400, f"messages: {n_images} images; this server takes at most {limits.max_images} "
                              "per request", param="messages")
    out = []
    for i, m in enumerate(body.messages):
        role = "system" if m.role == "developer" else m.role
        if isinstance(m.content, str):
            parts = (m.content,)
        else:
            parts = tuple(
                p.text if not isinstance(p, ImagePart)
                else VlmImagePart(take_image(p.image_url.url, limits, f"messages.{i}.content.{j}.image_url"))
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
