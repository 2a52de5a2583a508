"""Sending a job's work to the workers: ``chord(group(humanize_chunk), merge)``.

Tasks are addressed by name, so callers (API, CLI, operator) need not import the worker code. Task
arguments are ``(job_id, index)`` only; task ids are deterministic (``<job>:<index>`` plus a round
suffix on re-drives) so status can be derived without storing them.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import chord, group

from humanizer.worker.celery_app import CHUNK_QUEUE, CONTROL_QUEUE, app

#: Celery priority per job priority. On Redis, 0 is served first; kombu keeps one list per step.
PRIORITIES = {"high": 0, "normal": 3, "low": 6}
CONTROL_PRIORITY = 0  # merge/verify before any chunk: finishing a job frees its results sooner


def chunk_task_id(job_id: str, index: int, round_: int = 0) -> str:
    return f"{job_id}:{index}" if round_ == 0 else f"{job_id}:{index}:r{round_}"


def dispatch(job_id: str, indices: Sequence[int], round_: int = 0, priority: str = "normal") -> list[str]:
    """Send the chord for ``indices`` of ``job_id``; return the header task ids."""
    level = PRIORITIES.get(priority, PRIORITIES["normal"])
    merge_sig = app.signature(
        "humanizer.merge", args=(job_id,), immutable=True, queue=CONTROL_QUEUE, priority=CONTROL_PRIORITY
    )
    if not indices:
        merge_sig.apply_async(task_id=f"{job_id}:merge:{round_}")
        return []
    header = [
        app.signature(
            "humanizer.humanize_chunk", args=(job_id, i), immutable=True, queue=CHUNK_QUEUE, priority=level
        ).set(task_id=chunk_task_id(job_id, i, round_))
        for i in indices
    ]
    chord(group(header), merge_sig.set(task_id=f"{job_id}:merge:{round_}")).apply_async()
    return [sig.id for sig in header]
