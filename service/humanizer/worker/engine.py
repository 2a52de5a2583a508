"""One asyncio event loop per worker process, in a daemon thread, where the provider calls run.

Celery's pool threads each hold one batch task; a batch hands its chunks to this loop and blocks until
they are all done. Provider calls are I/O waits of hundreds of milliseconds, so hundreds of them can be in
flight in one process on one loop, at a fraction of the CPU a thread per call costs (the aiohttp transport
measured ~1-2 ms CPU per call against ~3 ms for the sync SDK on threads; see docs/benchmarks.md).

The loop is created lazily, per process id, so a prefork child never inherits its parent's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class FairSlots:
    """``n`` call slots shared fairly between jobs: a freed slot goes to the waiting call whose job has
    the fewest calls running in this process (the oldest waiter on a tie), not to whoever queued first.

    The fair scheduler keeps every worker thread holding a batch, so a new job's batch often arrives
    while older batches wait for slots here; without this it would wait behind all of them. Use on the
    engine's loop only (not thread-safe)."""

    def __init__(self, n: int) -> None:
        self.free = n
        self.running: dict[str, int] = {}
        self.waiting: dict[str, deque[tuple[int, asyncio.Future[None]]]] = {}
        self._seq = itertools.count()

    def hold(self, key: str) -> _Held:
        """``async with slots.hold(job_id):`` one slot for the block (a plain class, not a generator-based
        context manager: it is entered once per provider call)."""
        return _Held(self, key)

    async def _acquire(self, key: str) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            self.running[key] = self.running.get(key, 0) + 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (next(self._seq), fut)
        self.waiting.setdefault(key, deque()).append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # the slot was handed over just before: give it back
                self._release(key)
            else:
                queue = self.waiting.get(key)
                if queue is not None and entry in queue:
                    queue.remove(entry)
                    if not queue:
                        del self.waiting[key]
            raise

    def _release(self, key: str) -> None:
        left = self.running.get(key, 0) - 1
        if left > 0:
            self.running[key] = left
        else:
            self.running.pop(key, None)
        if not self.waiting:
            self.free += 1
            return
        nxt = min(self.waiting, key=lambda k: (self.running.get(k, 0), self.waiting[k][0][0]))
        queue = self.waiting[nxt]
        _, fut = queue.popleft()
        if not queue:
            del self.waiting[nxt]
        self.running[nxt] = self.running.get(nxt, 0) + 1
        fut.set_result(None)


class _Held:
    __slots__ = ("key", "slots")

    def __init__(self, slots: FairSlots, key: str) -> None:
        self.slots, self.key = slots, key

    async def __aenter__(self) -> None:
        await self.slots._acquire(self.key)

    async def __aexit__(self, *exc: object) -> None:
        self.slots._release(self.key)


class CallEngine:
    """An event loop running forever in a daemon thread; ``run`` executes a coroutine on it.

    ``calls`` > 0 caps the provider calls in flight in this process (``slot()``): a worker can then hold
    more batches than it runs at once, and a call that ends hands its slot straight to a chunk of the
    next batch instead of waiting for its own batch's slowest call and for the next message."""

    def __init__(self, calls: int = 0) -> None:
        self.calls = calls
        self._slots = FairSlots(calls) if calls > 0 else None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="humanizer-calls", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the engine's loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def slot(self, job_id: str = "") -> contextlib.AbstractAsyncContextManager[Any]:
        """Hold one of the process's call slots for a call of ``job_id`` (no limit when ``calls`` is 0),
        shared fairly between jobs (``FairSlots``). Use on the engine's loop."""
        return self._slots.hold(job_id) if self._slots is not None else contextlib.nullcontext()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


_lock = threading.Lock()
_engine: tuple[int, CallEngine] | None = None


def get_engine(calls: int = 0) -> CallEngine:
    """This process's engine (created on first use, with ``calls`` slots)."""
    global _engine
    with _lock:
        if _engine is None or _engine[0] != os.getpid():
            _engine = (os.getpid(), CallEngine(calls))
        return _engine[1]
