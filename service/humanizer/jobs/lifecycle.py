"""A job's life: its states, the transitions between them, and the one function per transition that every
front end (API, CLI, Python API, operator) and every task calls.

The state is the ``status`` field of the job record; ``JobStore`` moves it with a Lua script that refuses
what this table refuses (an ended job never moves again except by ``redrive``; a suspended one only to
cancelled or failed, or back by ``resume``). Each function here makes its move, then — only if the move
happened — logs ``job.<transition>`` and counts it (``humanizer_job_transitions_total``; the ended states
also ``humanizer_jobs_finished_total`` and the job's duration), so nothing is counted twice however many
workers race to end the same job. ``docs/architecture.md`` draws the table.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from humanizer import metrics
from humanizer.jobs.models import STOPS_WORK, TERMINAL, JobStatus
from humanizer.jobs.store import JobStore
from humanizer.logging import get_logger

log = get_logger("humanizer.lifecycle")

S = JobStatus


class Transition(StrEnum):
    SUBMIT = "submit"
    START = "start"
    PROGRESS = "progress"
    FINISH = "finish"
    FAIL = "fail"
    CANCEL = "cancel"
    SUSPEND = "suspend"
    RESUME = "resume"
    REDRIVE = "redrive"


_RUNNING = (S.PENDING, S.STARTED, S.PROGRESS)

#: (state, transition) -> the state it leads to. A pair not listed is refused (the state stays).
TRANSITIONS: dict[tuple[JobStatus | None, Transition], JobStatus] = {
    (None, Transition.SUBMIT): S.PENDING,
    (S.PENDING, Transition.START): S.STARTED,
    **{(s, Transition.PROGRESS): S.PROGRESS for s in (S.PENDING, S.STARTED)},
    **{(s, Transition.FINISH): S.SUCCESS for s in _RUNNING},
    **{(s, Transition.FAIL): S.FAILURE for s in (*_RUNNING, S.SUSPENDED)},
    **{(s, Transition.CANCEL): S.CANCELLED for s in (*_RUNNING, S.SUSPENDED)},
    **{(s, Transition.SUSPEND): S.SUSPENDED for s in _RUNNING},
    (S.SUSPENDED, Transition.RESUME): S.PROGRESS,
    # a re-drive sends what is missing: a running job stays as it is, an ended one is reopened (replay);
    # a suspended one waits for resume
    **{(s, Transition.REDRIVE): s for s in _RUNNING},
    **{(s, Transition.REDRIVE): S.PROGRESS for s in TERMINAL},
}


def allowed(state: JobStatus | None, transition: Transition) -> JobStatus | None:
    """The state ``transition`` leads to from ``state``; None: refused."""
    return TRANSITIONS.get((state, transition))


def _moved(store: JobStore, job_id: str, transition: Transition, status: JobStatus, **fields: Any) -> bool:
    sources = [s for (s, t), to in TRANSITIONS.items() if t is transition and to is status and s is not None]
    moved = store.set_status(job_id, status, allowed_from=sources, **fields)
    if moved:
        _record(store, job_id, transition, status)
    return moved


def _record(store: JobStore, job_id: str, transition: Transition, status: JobStatus) -> None:
    metrics.count_job_transition(transition.value)
    log.info(f"job.{transition.value}", job_id=job_id, status=status.value)
    if status in TERMINAL:
        created = store.field(job_id, "created_at")
        metrics.observe_job_finished(status.value, time.time() - float(created) if created else None)


def submitted(store: JobStore, job_id: str) -> None:
    """The job record was just written (``JobStore.create``): count and log the submission."""
    _record(store, job_id, Transition.SUBMIT, S.PENDING)


def start(store: JobStore, job_id: str) -> bool:
    """A worker begins the job's first batch."""
    return _moved(store, job_id, Transition.START, S.STARTED, phase="rewriting")


def finish(store: JobStore, job_id: str, **fields: Any) -> bool:
    """Merged (and verified): the job succeeded."""
    return _moved(store, job_id, Transition.FINISH, S.SUCCESS, **{"phase": "done", **fields})


def fail(store: JobStore, job_id: str, error: str, phase: str = "failed", **fields: Any) -> bool:
    """The job cannot complete (dead letters at merge, the provider refused it, a budget)."""
    return _moved(store, job_id, Transition.FAIL, S.FAILURE, phase=phase, error=error, **fields)


def cancel(store: JobStore, job_id: str, reason: str = "cancelled by request") -> bool:
    """Stop the job for good: chunks not yet rewritten are skipped. False if it had already ended."""
    return _moved(store, job_id, Transition.CANCEL, S.CANCELLED, phase="cancelled", error=reason)


def suspend(store: JobStore, job_id: str) -> bool:
    """Pause the job (chunks already rewritten are kept); False unless it was running."""
    return _moved(store, job_id, Transition.SUSPEND, S.SUSPENDED, phase="suspended")


def resume(store: JobStore, job_id: str) -> list[int] | None:
    """Continue a suspended job: reopen it and send exactly the chunks still missing. None unless it was
    suspended (a job that ended meanwhile, or was never paused, stays as it is)."""
    if store.status(job_id) is not S.SUSPENDED:
        return None
    from humanizer.jobs.replay import redrive

    missing = redrive(store, job_id, resume=True)
    _record(store, job_id, Transition.RESUME, S.PROGRESS)
    return missing


def stops_work(status: str | JobStatus | None) -> bool:
    """Whether a batch of a job in ``status`` must not call the provider."""
    return status is not None and JobStatus(status) in STOPS_WORK
