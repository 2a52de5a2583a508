"""Group commit of chunk outputs: one Redis round trip for all the outputs that finish together.

A process's provider calls share one event loop (``engine.py``). Writing each output to Redis
synchronously on that loop would stop it for a round trip per chunk, and every other call's reply would
wait behind it. Instead, ``save`` queues the output and awaits its answer; one writer thread stores
whatever queued up while its previous write was in flight, in one pipeline (``JobStore.save_outputs``).
At low load that is one output per write, as before; at high load it is many per round trip.
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor

from humanizer.jobs.store import ChunkOutput, JobStore


class OutputWriter:
    """Queues outputs from the engine's loop and stores them in batches, first writer wins per chunk."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._queue: list[tuple[ChunkOutput, asyncio.Future[bool]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="humanizer-writer")

    async def save(self, output: ChunkOutput) -> bool:
        """Store ``output`` unless the chunk has one; True when this was the first writer. Raises what the
        store raised (e.g. Redis unreachable after its retries)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        self._queue.append((output, answer))
        if self._writing is None or self._writing.done():  # done: cancelled before it could start
            self._writing = loop.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
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
                        raise
                else:
                    for (_, answer), first in zip(batch, firsts, strict=True):
                        if not answer.done():
                            answer.set_result(first)
        finally:
            self._writing = None


def get_writer(store: JobStore) -> OutputWriter:
    """This process's writer for ``store`` (a forked child gets its own: threads do not survive a fork)."""
    return _writer(store, os.getpid())


@functools.cache
def _writer(store: JobStore, pid: int) -> OutputWriter:
    return OutputWriter(store)
