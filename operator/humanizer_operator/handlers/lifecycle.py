"""suspend, activeDeadlineSeconds and ttlSecondsAfterFinished.

``suspend: true`` before the job started: it is not submitted (phase Pending, condition Suspended).
``suspend: true`` while it runs: the job is paused, like a suspended batch/v1 Job: chunks not yet
started are not sent to the provider (the store marks the job cancelled, which workers honour),
chunks already rewritten are kept. ``suspend: false``: the job is reopened and a chord is sent for
exactly the chunks still missing (what the reconciler does for a stalled job).
"""

from __future__ import annotations

from typing import Any

import kopf

from humanizer.jobs import lifecycle
from humanizer.jobs.store import JobNotFound, JobStore
from humanizer.redis_client import RedisUnavailable
from humanizer_operator import k8s, service
from humanizer_operator.handlers.jobs import GVR, submit
from humanizer_operator.status import PENDING, RUNNING, TERMINAL_PHASES


def deadline_exceeded(spec: Any, status: Any, now: float) -> bool:
    limit = spec.get("activeDeadlineSeconds")
    started = k8s.parse_rfc3339(status.get("startTime"))
    return bool(limit) and started is not None and now - started > float(limit)


def ttl_expired(spec: Any, status: Any, now: float) -> bool:
    ttl = spec.get("ttlSecondsAfterFinished")
    finished = k8s.parse_rfc3339(status.get("completionTime"))
    return ttl is not None and finished is not None and now - finished >= float(ttl)


def pause(store: JobStore, job_id: str) -> bool:
    """Stop sending the job's chunks (``jobs.lifecycle.suspend``); True if it was running."""
    return lifecycle.suspend(store, job_id)


def resume(store: JobStore, job_id: str) -> int:
    """Reopen a suspended job and send its missing chunks again (``jobs.lifecycle.resume``); returns how
    many. A job that finished or was cancelled meanwhile stays as it is."""
    return len(lifecycle.resume(store, job_id) or [])


@kopf.on.field(*GVR, field="spec.suspend")
def humanizejob_suspend(
    old: Any, new: Any, body: Any, spec: Any, status: Any, patch: kopf.Patch, logger: Any, **_: Any
) -> None:
    if old is None or bool(old) == bool(new) or status.get("phase") in TERMINAL_PHASES:
        return  # creation (the create handler decides) or a finished job
    generation = body["metadata"].get("generation")
    job_id = status.get("jobId")
    conditions = status.get("conditions")
    try:
        if new:
            if job_id:
                pause(service.store(), job_id)
            patch.status["phase"] = PENDING
            patch.status["conditions"] = k8s.set_condition(
                conditions, "Suspended", True, "JobSuspended",
                "paused: no new chunks are sent; rewritten chunks are kept", generation,
            )
            kopf.event(body, type="Normal", reason="Suspended", message="job paused (spec.suspend=true)")
            return
        if not job_id:
            submit(body, spec, status, patch, logger)
            return
        sent = resume(service.store(), job_id)
    except RedisUnavailable as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from None
    except JobNotFound:
        return  # expired from Redis: the status loop reports it
    patch.status["phase"] = RUNNING
    patch.status["conditions"] = k8s.set_condition(
        conditions, "Suspended", False, "JobResumed", f"resumed: {sent} chunk(s) sent", generation
    )
    kopf.event(body, type="Normal", reason="Resumed", message=f"job resumed: {sent} chunk(s) still to rewrite")
