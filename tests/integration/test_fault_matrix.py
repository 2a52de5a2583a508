"""Crash recovery under control: mid-job, one kind of the Redis state a job depends on is removed — what a
crash between AOF fsyncs can lose — and the job must either complete with each chunk exactly once, in
order, or fail with a clear error, within a bounded time; it must never hang.

Each case asserts, from a status read after the fault, that the job was still running when it hit.
Recovery comes from the reconciler (``HUMANIZER_STALL_SECONDS`` 4 s here) and the idempotent tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from humanizer.config import get_settings
from humanizer.jobs.models import JobStatus
from humanizer.monitoring.queues import UNACKED_KEY
from humanizer.orchestration import OrchestrationService
from tests.integration.conftest import markers_in, numbered_document, poll_until

pytestmark = pytest.mark.integration

N = 400
BOUND = 60.0  # seconds from the fault to the job's end: stall detection (4 s) plus a re-drive, with room


def _held_batch(r: redis.Redis, p: str, job: str) -> str:
    """A batch the scheduler holds (not yet queued) vanishes: the loss of a message before delivery."""
    assert r.lpop(f"{p}:sched:pending:{job}") is not None, "no held batch to lose"
    return "a held batch"


def _completion_bookkeeping(r: redis.Redis, p: str, job: str) -> str:
    """The job's released-batch set vanishes: no batch report can ever say it was the last (no merge)."""
    ids = r.smembers(f"{p}:sched:out:{job}")
    assert ids, "no released batch to forget"
    r.delete(f"{p}:sched:out:{job}")
    r.zrem(f"{p}:sched:released", *[f"{job}|{i}" for i in ids])
    return "the completion bookkeeping"


def _unacked_entry(r: redis.Redis, p: str, job: str) -> str:
    """A delivered, unacknowledged message's entry vanishes (kombu could no longer restore it)."""
    broker = get_settings().broker_key_prefix
    fields = [f for f, v in r.hgetall(broker + UNACKED_KEY).items() if job in v]
    assert fields, "no unacked message of the job"
    r.hdel(broker + UNACKED_KEY, fields[0])
    return "an unacked entry"


def _stored_output(r: redis.Redis, p: str, job: str) -> str:
    """A chunk's stored output vanishes after it was counted done."""
    fields = r.hkeys(f"{p}:job:{job}:out")
    assert fields, "no output stored yet"
    r.hdel(f"{p}:job:{job}:out", fields[0])
    return "a stored output"


def _active_entry(r: redis.Redis, p: str, job: str) -> str:
    """The job's entry in the active set (the reconciler's input) vanishes."""
    assert r.zrem(f"{p}:active", job) == 1
    return "the active-set entry"


def _record_counters(r: redis.Redis, p: str, job: str) -> str:
    """Counter fields of the job record vanish (``done``, ``tokens_in``, ``tokens_out``)."""
    assert r.hdel(f"{p}:job:{job}", "done", "tokens_in", "tokens_out") >= 1
    return "job record counters"


def _record_status(r: redis.Redis, p: str, job: str) -> str:
    """The job record's ``status`` and ``total`` vanish: the job cannot be finished as it was."""
    assert r.hdel(f"{p}:job:{job}", "status", "total") == 2
    return "job record status and total"


FAULTS: dict[str, Callable[[redis.Redis, str, str], str]] = {
    "held-batch": _held_batch,
    "completion-bookkeeping": _completion_bookkeeping,
    "unacked-entry": _unacked_entry,
    "stored-output": _stored_output,
    "active-entry": _active_entry,
    "record-counters": _record_counters,
    "record-status": _record_status,
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_lost_state_mid_job_completes_exactly_once_or_fails_clearly(make_stack: Any, fake_llm: Any,
                                                                     fault: str) -> None:
    make_stack(workers=2, concurrency=4)
    fake_llm.configure(latency=0.3, jitter=0.0)
    svc = OrchestrationService()
    r, prefix = svc.store.r, svc.store.prefix
    job_id = svc.submit_document(numbered_document(N, "F"), chunk_max_tokens=40)["job_id"]
    assert poll_until(lambda: svc.view(job_id).progress.completed >= 40, timeout=30)
    what = FAULTS[fault](r, prefix, job_id)
    hit = time.monotonic()
    after = r.hgetall(f"{prefix}:job:{job_id}")
    outputs = r.hlen(f"{prefix}:job:{job_id}:out")
    assert after.get("status") in (None, "STARTED", "PROGRESS") and outputs < N, (
        f"the job had ended when {what} was lost: {after.get('status')}, {outputs}/{N} outputs"
    )

    def ended() -> bool:
        meta = r.hgetall(f"{prefix}:job:{job_id}")
        return meta.get("status") in ("SUCCESS", "FAILURE", "CANCELLED")

    assert poll_until(ended, timeout=BOUND, step=0.2), (
        f"the job hung after losing {what}: {r.hgetall(f'{prefix}:job:{job_id}')}"
    )
    took = time.monotonic() - hit
    view = svc.view(job_id, with_result=True)
    if view.status == JobStatus.SUCCESS:
        found = markers_in(view.humanized_text or "", "F")
        assert found == [f"F-{i:04d}" for i in range(N)], f"{len(found)} markers for {N} chunks after losing {what}"
        outcome = "completed, each chunk once"
    else:
        assert view.status == JobStatus.FAILURE and view.error, view
        assert len(view.error.splitlines()) == 1 and len(view.error) < 500, view.error
        outcome = f"failed: {view.error}"
    print(f"\nFIGURE fault matrix: lost {what} mid-job ({outputs}/{N} stored) -> {outcome} {took:.1f}s later")
