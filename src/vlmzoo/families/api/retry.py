"""One retry loop for every API provider: which failures are worth another try, how long to wait.

Each SDK's own retries are turned off, so both SDKs behave the same and nothing retries twice
inside each other. A provider module only reads its SDK's errors into a ``Failure``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable

# Statuses worth another try: rate limits, the server's own trouble, and its request timeout.
# Everything else (400 bad request, 401/403 key, 404 model) fails the same way every time.
RETRYABLE_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is waited for only this long
MAX_BACKOFF = 20.0


@dataclass(frozen=True)
class Failure:
    """A provider error, read by the provider module: status None means no HTTP response."""

    status: int | None
    message: str
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE_STATUSES


def retry_after_seconds(headers) -> float | None:
    """Seconds a response asks us to wait: ``retry-after-ms`` (OpenAI), or ``Retry-After`` as
    seconds or an HTTP date. None when absent or unreadable."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def delay(attempts: int, retry_after: float | None, backoff: float) -> float:
    """The server's Retry-After (capped), else exponential backoff from ``backoff`` seconds, with jitter."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    return min(backoff * 2 ** (attempts - 1), MAX_BACKOFF) * random.uniform(0.5, 1.0)


def with_retries(attempt: Callable, *, read_failure: Callable[[Exception], Failure | None], max_retries: int,
                 backoff: float, give_up: Callable[[Failure, int], Exception], on_retry: Callable[[], None],
                 passthrough: type[Exception] | tuple = (), slots=None,
                 may_retry: Callable[[], bool] = lambda: True):
    """``attempt()`` with retries on rate limits, server errors, timeouts and lost connections.

    ``read_failure`` turns a provider exception into a Failure (None: not a provider error, it
    propagates, as do ``passthrough`` errors). After the last attempt, or on a failure that
    would fail again the same way, ``give_up(failure, attempts)`` is raised. Each attempt holds
    one of ``slots`` (a semaphore bounding concurrent requests); waiting between attempts does not.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            if slots is None:
                return attempt()
            with slots:
                return attempt()
        except passthrough:
            raise
        except Exception as e:  # noqa: BLE001 - only provider errors are handled, the rest re-raised
            failure = read_failure(e)
            if failure is None:
                raise
        if not failure.retryable or attempts > max_retries or not may_retry():
            # raised outside the except block: the SDK's exception (which may quote the key)
            # is not chained to ours
            raise give_up(failure, attempts)
        on_retry()
        time.sleep(delay(attempts, failure.retry_after, backoff))
