"""Requests, retries, tokens and cost of an API model object, summed thread-safely."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Usage:
    """Running totals of a model object. ``requests`` counts answered requests; ``retries``
    the extra attempts after a retryable failure. ``cost_usd`` is None as soon as one answered
    request had no known price (never a made-up 0)."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0


class UsageMeter:
    """Thread-safe running totals (a batch runs in several threads)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._usage = Usage()

    def add_answer(self, prompt_tokens: int | None, completion_tokens: int | None, cost: float | None) -> None:
        with self._lock:
            u = self._usage
            total = None if cost is None or u.cost_usd is None else u.cost_usd + cost
            self._usage = replace(u, requests=u.requests + 1, prompt_tokens=u.prompt_tokens + (prompt_tokens or 0),
                                  completion_tokens=u.completion_tokens + (completion_tokens or 0), cost_usd=total)

    def add_retry(self) -> None:
        with self._lock:
            self._usage = replace(self._usage, retries=self._usage.retries + 1)

    def snapshot(self) -> Usage:
        with self._lock:
            return self._usage
