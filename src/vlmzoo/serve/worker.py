"""One model, one thread, and dynamic batching of the requests waiting for it.

A model object is not safe to call from two threads at once, and on a CPU two calls would only
fight over the same cores. So each served model gets one worker thread, and every use of the
model (a batch of chats, a stream, an embedding) is a job on that thread.

Chats that wait at the same time are answered in one batched ``ask``: the worker takes the first
waiting chat, waits up to ``window`` seconds for more with the same generation options, and runs
up to ``max_batch`` of them together. Under load the window costs nothing (requests are already
queued); alone, a request waits at most ``window`` longer.

A chat whose client has gone (its future cancelled) is dropped while it waits; once every chat of
a running batch is gone, generation stops at its next token (``GenerationOptions.cancel``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vlmzoo.errors import VlmzooError

log = logging.getLogger("vlmzoo.serve")


@dataclass
class _Chat:
    chat: list  # of tasks.Message
    options: dict  # generation keyword arguments for ask
    future: asyncio.Future

    @property
    def key(self) -> tuple:
        return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in self.options.items()))


@dataclass
class WorkerStats:
    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    cancelled_streams: int = 0
    cancelled_chats: int = 0  # non-streamed chats whose client left before the answer


class ModelWorker:
    def __init__(self, model, *, max_batch: int = 8, window: float = 0.01):
        self.model = model
        self.max_batch = max(1, max_batch)
        self.window = window
        self.stats = WorkerStats()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"vlmzoo-{model.name}")
        self._chats: asyncio.Queue | None = None
        self._loop_task: asyncio.Task | None = None
        self._waiting: list[_Chat] = []  # taken from the queue, not yet in a batch

    # -- public: called from request handlers --------------------------------------------------

    async def ask(self, chat: list, options: dict):
        """The Answer to one chat, batched with whatever chats are waiting alongside it."""
        self._ensure_started()
        future = asyncio.get_running_loop().create_future()
        await self._chats.put(_Chat(chat, options, future))
        return await future

    async def run(self, fn, *args, **kwargs):
        """Any other use of the model (embeddings, ...) on the model's thread."""
        self.stats.requests += 1
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def stream(self, chat: list, options: dict):
        """Text pieces of one chat as they are decoded, then the final Answer (last item).

        The whole stream holds the model's thread, so it never overlaps a batch. Closing this
        generator early (the client went away) cancels generation at its next token.
        """
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        done = object()
        started: list = []  # the TextStream, once the model's thread has begun it
        cancelled = threading.Event()

        def produce():
            if cancelled.is_set():  # the client left while this waited for the model's thread
                return
            try:
                text_stream = self.model.ask(messages=chat, stream=True, **options)
                started.append(text_stream)
                if cancelled.is_set():
                    text_stream.cancel()
                for piece in text_stream:
                    loop.call_soon_threadsafe(pieces.put_nowait, piece)
                loop.call_soon_threadsafe(pieces.put_nowait, (done, text_stream.result))
            except BaseException as e:  # noqa: BLE001 - handed to the request's coroutine
                loop.call_soon_threadsafe(pieces.put_nowait, (done, e))

        self.stats.requests += 1
        self._executor.submit(produce)
        finished = False
        try:
            while True:
                item = await pieces.get()
                if isinstance(item, tuple) and item and item[0] is done:
                    finished = True
                    yield item[1]
                    return
                yield item
        finally:
            if not finished:
                cancelled.set()
                if started:
                    started[0].cancel()
                self.stats.cancelled_streams += 1

    def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the batching loop ---------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._loop_task is None:
            self._chats = asyncio.Queue()
            self._loop_task = asyncio.get_running_loop().create_task(self._batch_loop())

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [job for job in await self._next_batch() if not self._gone(job)]
            if not batch:
                continue
            cancel = threading.Event()

            def on_done(_, batch=batch, cancel=cancel):
                if all(job.future.done() for job in batch):  # nobody waits for this batch any more
                    cancel.set()

            for job in batch:
                job.future.add_done_callback(on_done)
            try:
                answers = await loop.run_in_executor(self._executor, self._answer, batch, cancel)
            except BaseException as e:  # noqa: BLE001 - every waiting request gets its error
                self.stats.cancelled_chats += sum(job.future.cancelled() for job in batch)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
                if isinstance(e, asyncio.CancelledError):
                    raise
                continue
            for job, answer in zip(batch, answers):
                if job.future.done():  # the client went away
                    self.stats.cancelled_chats += job.future.cancelled()
                    continue
                if isinstance(answer, BaseException):
                    job.future.set_exception(answer)
                else:
                    job.future.set_result(answer)

    async def _next_batch(self) -> list[_Chat]:
        """The oldest waiting chat plus, within the window, others with the same options."""
        first = self._waiting.pop(0) if self._waiting else await self._chats.get()
        batch = [first]
        deadline = time.monotonic() + self.window
        # chats already set aside (other options) join first, in arrival order
        for job in list(self._waiting):
            if len(batch) < self.max_batch and job.key == first.key:
                self._waiting.remove(job)
                batch.append(job)
        while len(batch) < self.max_batch:
            timeout = deadline - time.monotonic()
            try:
                job = self._chats.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._chats.get(), timeout)
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if job.key == first.key:
                batch.append(job)
            else:
                self._waiting.append(job)
        return batch

    def _gone(self, job: _Chat) -> bool:
        """The chat's client left while it waited: drop it before it costs any model time."""
        if job.future.cancelled():
            self.stats.cancelled_chats += 1
            return True
        return False

    def _answer(self, batch: list[_Chat], cancel: threading.Event) -> list:
        """Runs on the model's thread. One batched ask; if it fails on the input, each chat
        alone, so an error reaches only the request that caused it. ``cancel`` set: every
        client of the batch has left, so generation stops."""
        self.stats.requests += len(batch)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        if len(batch) > 1:
            try:
                return self.model.ask(messages=[job.chat for job in batch], **batch[0].options, cancel=cancel)
            except VlmzooError:
                log.info("batch of %d failed on its input; answering each alone", len(batch))
        out = []
        for job in batch:
            try:
                out.append(self.model.ask(messages=job.chat, **job.options, cancel=cancel))
            except VlmzooError as e:
                out.append(e)
        return out
