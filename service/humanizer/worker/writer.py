"""Group commit of chunk outputs: one Redis round trip for many outputs.

A process's provider calls share one event loop (``engine.py``). Writing each output to Redis
synchronously on that loop would stop it for a round trip per chunk, and every other call's reply would
wait behind it. Instead, ``save`` queues the output and awaits its answer; one writer thread stores what
has queued up, in one pipeline (``JobStore.save_outputs``).

When to write: at once when the caller says nothing else is coming (``last``: its batch has no other chunk
still running, so the batch task is waiting for this write), else when ``MAX_GROUP`` outputs are queued or
the oldest has waited ``linger`` seconds. A write costs ~0.1 ms of CPU in hand-overs between the loop and
the writer thread whatever it carries, so at a steady trickle (a chunk ending every few milliseconds in a
wide job) outputs one at a time cost several percent of a worker's CPU; grouped by batch they cost a
fraction. An output waits at most ``linger`` before it is stored; a worker killed meanwhile loses it, and
its batch, redelivered, calls the provider again for that chunk (as for a kill during the call).
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor

from humanizer.jobs.store import ChunkOutput, JobStore

LINGER_SECONDS = 0.025
MAX_GROUP = 64


class OutputWriter:
    """Queues outputs from the engine's loop and stores them in groups, first writer wins per chunk."""

    def __init__(self, store: JobStore, linger: float = LINGER_SECONDS) -> None:
        self.store = store
        self.linger = linger
        self.writes = 0  # round trips made (tests, benchmarks)
        self._queue: list[tuple[ChunkOutput, asyncio.Future[bool]]] = []
        self._since = 0.0  # loop time at which the oldest queued output arrived
        self._urgent = False  # a queued output's caller has nothing else coming
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="humanizer-writer")

    async def save(self, output: ChunkOutput, last: bool = True) -> bool:
        """Store ``output`` unless the chunk has one; True when this was the first writer. ``last=False``:
        more outputs of the caller's batch follow soon, so this one may wait (at most ``linger``) to share
        their round trip. Raises what the store raised (e.g. Redis unreachable after its retries)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        if not self._queue:
            self._since = loop.time()
        self._queue.append((output, answer))
        self._urgent = self._urgent or last
        self._kick(loop)
        return await answer

    def flush(self) -> None:
        """Write what is queued without waiting for more (a batch's last chunk ended without an output)."""
        if self._queue:
            self._urgent = True
            self._kick(asyncio.get_running_loop())

    def _due(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self._urgent or len(self._queue) >= MAX_GROUP or loop.time() - self._since >= self.linger

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._writing is not None and not self._writing.done():
            return  # the running drain looks at the queue again after its write
        if not self._queue:
            return
        if self._due(loop):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._writing = loop.create_task(self._drain())
        elif self._timer is None:
            self._timer = loop.call_at(self._since + self.linger, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._kick(loop)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        cancelled = False
        try:
            while self._queue and self._due(loop):
                batch, self._queue = self._queue, []
                self._urgent = False
                try:
                    self.writes += 1
                    firsts = await loop.run_in_executor(self._thread, self.store.save_outputs, [o for o, _ in batch])
                except BaseException as exc:  # every waiter gets the error, as a direct write would have raised it
                    for _, answer in batch:
                        if answer.done():
                            continue
                        if isinstance(exc, Exception):
                            answer.set_exception(exc)
                        else:  # cancelled (the loop is going away): its waiters are cancelled with it
                            answer.cancel()
                    if not isinstance(exc, Exception):
                        cancelled = True
                        raise
                else:
                    for (_, answer), first in zip(batch, firsts, strict=True):
                        if not answer.done():
                            answer.set_result(first)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            self._writing = None
            if not cancelled:
                self._kick(loop)  # what arrived during the write: now, or when its linger is up


def get_writer(store: JobStore) -> OutputWriter:
    """This process's writer for ``store`` (a forked child gets its own: threads do not survive a fork)."""
    return _writer(store, os.getpid())


@functools.cache
def _writer(store: JobStore, pid: int) -> OutputWriter:
    return OutputWriter(store)
