import os
import threading

import pytest

from vlmzoo.engine.prefetch import prefetched


def test_batches_come_back_in_order_prepared_off_the_main_thread():
    main = threading.get_ident()
    seen_threads = set()

    def prepare(batch):
        seen_threads.add(threading.get_ident())
        return list(batch)

    out = list(prefetched(list(range(10)), 3, prepare))
    assert out == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert main not in seen_threads


def test_preparation_runs_at_most_depth_batches_ahead():
    started = []

    def prepare(batch):
        started.append(batch[0])
        return batch[0]

    gen = prefetched(list(range(100)), 1, prepare, depth=2)
    assert next(gen) == 0
    # the consumer holds batch 0; at most batches 1 and 2 can have been started
    assert max(started) <= 2
    gen.close()


def test_an_error_surfaces_at_its_batch():
    def prepare(batch):
        if 4 in batch:
            raise ValueError("bad image 4")
        return batch

    gen = prefetched(list(range(8)), 2, prepare)
    assert next(gen) == [0, 1] and next(gen) == [2, 3]
    with pytest.raises(ValueError, match="bad image 4"):
        next(gen)


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="thread niceness is a POSIX feature")
def test_workers_run_at_low_priority_and_the_caller_keeps_its_own():
    from vlmzoo.engine.prefetch import PREFETCH_NICENESS

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = list(prefetched([1, 2, 3], 1, lambda batch: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    assert seen == [max(mine, PREFETCH_NICENESS)] * 3
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
