"""The operator's background loops (status loop, autoscaler): started by a kopf startup handler with an
``asyncio.Event`` to stop them, stopped here by the cleanup handlers."""

from __future__ import annotations

import asyncio

import kopf


async def stop_loop(memo: kopf.Memo, name: str, timeout: float = 10.0) -> None:
    """Set ``memo.<name>_stop`` and wait (bounded) for ``memo.<name>_task``; cancel it past ``timeout``."""
    stop = getattr(memo, f"{name}_stop", None)
    task = getattr(memo, f"{name}_task", None)
    if stop is None or task is None:
        return
    stop.set()
    try:
        await asyncio.wait_for(task, timeout)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()
