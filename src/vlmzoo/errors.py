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
