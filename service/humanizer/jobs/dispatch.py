"""Sending a job's work to the workers: ``chord(group(humanize_batch), merge)``.

The chunks are cut into batches of ``HUMANIZER_BATCH_SIZE`` consecutive indices, one task each: a wide job
is a few hundred messages instead of thousands (one client publishes ~650-800 messages/s on this machine kind),
and a worker runs a batch's provider calls at once on its event loop. Tasks are addressed by name, so
callers (API, CLI, operator) need not import the worker code. Task arguments are ``(job_id, indices)``
only; task ids are deterministic (``<job>:<first index>`` plus a round suffix on re-drives).
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import chord, group

from humanizer.config import get_settings
from humanizer.worker.celery_app import app, chunk_queue, control_queue

#: Celery priority per job priority. On Redis, 0 is served first; kombu keeps one list per step.
PRIORITIES = {"high": 0, "normal": 3, "low": 6}
CONTROL_PRIORITY = 0  # merge/verify before any chunk: finishing a job frees its results sooner


def batch_task_id(job_id: str, first_index: int, round_: int = 0) -> str:
    return f"{job_id}:{first_index}" if round_ == 0 else f"{job_id}:{first_index}:r{round_}"


def batches(indices: Sequence[int], size: int) -> list[list[int]]:
    """``indices`` in order, cut into lists of at most ``size``."""
    items, size = list(indices), max(1, size)
    return [items[k : k + size] for k in range(0, len(items), size)]


def dispatch(
    job_id: str, indices: Sequence[int], round_: int = 0, priority: str = "normal", batch_size: int | None = None
) -> list[str]:
    """Send the chord for ``indices`` of ``job_id``; return the header task ids."""
    level = PRIORITIES.get(priority, PRIORITIES["normal"])
    size = batch_size or get_settings().batch_size
    merge_sig = app.signature(
        "humanizer.merge", args=(job_id,), immutable=True, queue=control_queue(), priority=CONTROL_PRIORITY
    )
    if not indices:
        merge_sig.apply_async(task_id=f"{job_id}:merge:{round_}")
        return []
    header = [
        app.signature(
            "humanizer.humanize_batch", args=(job_id, part), immutable=True, queue=chunk_queue(), priority=level
        ).set(task_id=batch_task_id(job_id, part[0], round_))
        for part in batches(indices, size)
    ]
    chord(group(header), merge_sig.set(task_id=f"{job_id}:merge:{round_}")).apply_async()
    return [sig.id for sig in header]
