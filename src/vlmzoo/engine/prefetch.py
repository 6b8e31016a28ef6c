"""Run preparation (decode, resize, normalise) ahead of the model, in threads.

JPEG decoding and PIL resizing release the GIL, so a worker thread prepares batch k+1 while
the model computes batch k; results come back in input order.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

from vlmzoo.engine.batching import chunks

T = TypeVar("T")
R = TypeVar("R")


def prefetched(items: Sequence[T], batch_size: int, prepare: Callable[[Sequence[T]], R],
               depth: int = 2, workers: int = 2) -> Iterator[R]:
    """``prepare(batch)`` for consecutive batches of ``items``, up to ``depth`` batches ahead."""
    batches = iter(chunks(items, batch_size))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlmzoo-prefetch") as pool:
        pending = deque(pool.submit(prepare, b) for _, b in zip(range(depth), batches))
        while pending:
            result = pending.popleft().result()  # re-raises a preparation error here, in order
            nxt = next(batches, None)
            if nxt is not None:
                pending.append(pool.submit(prepare, nxt))
            yield result
