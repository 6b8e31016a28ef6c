"""Run preparation (decode, resize, normalise) ahead of the model, in threads.

JPEG decoding and PIL resizing release the GIL, so a worker thread prepares batch k+1 while
the model computes batch k; results come back in input order.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

from vlmzoo.engine.batching import chunks

# niceness of preparing threads (19 = lowest priority)
PREFETCH_NICENESS = 19

T = TypeVar("T")
R = TypeVar("R")


def prefetched(items: Sequence[T], batch_size: int, prepare: Callable[[Sequence[T]], R],
               depth: int = 2, workers: int = 2) -> Iterator[R]:
    """``prepare(batch)`` for consecutive batches of ``items``, up to ``depth`` batches ahead."""
    batches = iter(chunks(items, batch_size))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlmzoo-prefetch",
                            initializer=_yield_to_the_model) as pool:
        pending = deque(pool.submit(prepare, b) for _, b in zip(range(depth), batches))
        while pending:
            result = pending.popleft().result()  # re-raises a preparation error here, in order
            nxt = next(batches, None)
            if nxt is not None:
                pending.append(pool.submit(prepare, nxt))
            yield result


def _yield_to_the_model() -> None:
    """Lower this worker thread's priority (Linux: niceness is per thread).

    On a CPU the model's own threads use every core; a preparing thread that takes a core
    from one of them stalls the others at their next barrier. At low priority the workers run in
    the gaps and whenever the model waits for them, which speeds up classification end to end
    (docs/performance-history.md)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREFETCH_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: keep the default priority
        pass
