"""Errors vlmzoo raises on purpose. Each message names the input and what was wrong."""

from __future__ import annotations


class VlmzooError(Exception):
    """Base class: anything vlmzoo reports as a user-facing error."""


class ImageError(VlmzooError, ValueError):
    """An image could not be taken in. ``source`` names it (path, URL, or a description)."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class UnknownModelError(VlmzooError, LookupError):
    pass


class HubUnreachableError(VlmzooError, ConnectionError):
    pass


class TaskNotSupportedError(VlmzooError, NotImplementedError):
    pass


class InputError(VlmzooError, ValueError):
    """A request argument (not an image) is wrong: empty list, mismatched lengths, bad type."""


class MissingAPIKeyError(VlmzooError, LookupError):
    """An API model was loaded but no key is set; the message names the environment variable."""


class APIError(VlmzooError, RuntimeError):
    """An API provider refused or failed a request.

    ``status`` is the HTTP status (None for a connection error or timeout), ``message`` the
    provider's own words with any API key redacted, ``attempts`` how many times vlmzoo tried.
    """

    def __init__(self, model: str, message: str, *, status: int | None = None, attempts: int = 1,
                 retryable: bool = False):
        self.model = model
        self.status = status
        self.message = message
        self.attempts = attempts
        self.retryable = retryable
        what = f"HTTP {status}" if status is not None else "no response"
        if attempts > 1:
            text = f"{model}: gave up after {attempts} attempts; last error: {what}: {message}"
        else:
            text = f"{model}: {what}: {message}"
        super().__init__(text)


class StoreError(VlmzooError):
    """The results store cannot be used: not a SQLite file, damaged, read-only, unreadable, a
    folder, or held by another process too long; the message names the file and what to do."""


class MissingDependencyError(VlmzooError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra."""
