"""Sending a job's work to the workers, through the fair scheduler (``jobs/scheduler.py``).

The chunks are cut into batches of ``HUMANIZER_BATCH_SIZE`` consecutive indices, one task each: a wide job
is a few hundred messages instead of thousands, and a worker runs a batch's provider calls at once on its
event loop. The batches are *held* by the scheduler and released to the chunk queue a window at a time,
fairly across jobs; the batch that reports back last sends ``merge`` (:func:`batch_finished`). Tasks are
sent by name (``humanizer.broker.send``), so callers (API, CLI, operator) need not import the worker code.
Task arguments are ``(job_id, indices)`` only; task ids are deterministic (``<job>:<first index>`` plus a
round suffix on re-drives).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from humanizer import broker
from humanizer.config import Settings, get_settings
from humanizer.jobs.scheduler import Release, Scheduler
from humanizer.redis_client import get_redis

CONTROL_PRIORITY = 0  # merge/verify before any chunk: finishing a job frees its results sooner


def batch_task_id(job_id: str, first_index: int, round_: int = 0) -> str:
    return f"{job_id}:{first_index}" if round_ == 0 else f"{job_id}:{first_index}:r{round_}"


def batches(indices: Sequence[int], size: int) -> list[list[int]]:
    """``indices`` in order, cut into lists of at most ``size``."""
    items, size = list(indices), max(1, size)
    return [items[k : k + size] for k in range(0, len(items), size)]


def get_scheduler(settings: Settings | None = None) -> Scheduler:
    s = settings or get_settings()
    weights = tuple(sorted(s.tenant_weights.items()))
    return _scheduler(
        s.redis_identity, s.key_prefix, s.fair_scheduling, weights, s.scheduler_stale_seconds, s.result_ttl_seconds
    )


@functools.cache
def _scheduler(
    dsn: str, prefix: str, fair: bool, weights: tuple[tuple[str, float], ...], stale: float, ttl: int
) -> Scheduler:
    # fair scheduling off: an unbounded window, every batch released at once (plain FIFO dispatch)
    return Scheduler(
        get_redis(get_settings()),
        prefix,
        tenant_weights=dict(weights),
        fixed_window=0 if fair else 10**9,
        stale_seconds=stale,
        ttl_seconds=ttl,
    )


def send_merge(job_id: str, round_: int) -> None:
    broker.send("humanizer.merge", (job_id,), queue=broker.control_queue(), priority=CONTROL_PRIORITY,
                task_id=f"{job_id}:merge:{round_}")


def send_released(released: Sequence[Release]) -> None:
    queue = broker.chunk_queue()
    for item in released:
        broker.send("humanizer.humanize_batch", (item.job_id, item.indices), queue=queue, priority=item.level,
                    task_id=batch_task_id(item.job_id, item.indices[0], item.round_))


def release_and_send(scheduler: Scheduler | None = None) -> int:
    """Release what fits in the window now and send it; returns how many batches were sent."""
    released = (scheduler or get_scheduler()).release()
    send_released(released)
    return len(released)


def dispatch(
    job_id: str,
    indices: Sequence[int],
    round_: int = 0,
    priority: str = "normal",
    batch_size: int | None = None,
    tenant: str = "default",
) -> list[str]:
    """Hand ``indices`` of ``job_id`` to the scheduler (a re-drive, ``round_`` > 0, replaces what the job
    had outstanding) and send what fits in the window now; return the batch task ids."""
    sched = get_scheduler()
    if round_ > 0:
        sched.forget(job_id)
    if not indices:
        send_merge(job_id, round_)
        return []
    parts = batches(indices, batch_size or get_settings().batch_size)
    sched.hold(job_id, parts, round_=round_, priority=priority, tenant=tenant)
    release_and_send(sched)
    return [batch_task_id(job_id, part[0], round_) for part in parts]


def batch_finished(job_id: str, batch_id: str) -> bool:
    """A batch task reported back for good (not a retry): send ``merge`` if it was the job's last, then
    refill the window. Returns True when it sent the merge."""
    sched = get_scheduler()
    last = sched.complete(job_id, batch_id)
    if last:
        send_merge(job_id, sched.latest_round(job_id))
    release_and_send(sched)
    return last
