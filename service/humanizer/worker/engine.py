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
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class CallEngine:
    """An event loop running forever in a daemon thread; ``run`` executes a coroutine on it.

    ``calls`` > 0 caps the provider calls in flight in this process (``slot()``): a worker can then hold
    more batches than it runs at once, and a call that ends hands its slot straight to a chunk of the
    next batch instead of waiting for its own batch's slowest call and for the next message."""

    def __init__(self, calls: int = 0) -> None:
        self.calls = calls
        self._slots = asyncio.Semaphore(calls) if calls > 0 else None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="humanizer-calls", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the engine's loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Hold one of the process's call slots (no limit when ``calls`` is 0). Use on the engine's loop."""
        return self._slots if self._slots is not None else contextlib.nullcontext()

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
