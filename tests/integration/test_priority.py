"""Priorities and queues: a high-priority job overtakes a low-priority backlog; merges never wait."""

from __future__ import annotations

import time
from typing import Any

import pytest

from humanizer.jobs.dispatch import get_scheduler
from humanizer.jobs.models import JobStatus
from humanizer.monitoring.queues import queue_depth
from humanizer.orchestration import OrchestrationService
from tests.integration.conftest import numbered_document, poll_until

pytestmark = pytest.mark.integration


def test_high_priority_job_finishes_before_low_backlog(make_stack: Any, fake_llm: Any) -> None:
    make_stack(workers=1, concurrency=2)
    fake_llm.configure(latency=0.1, jitter=0.0)
    svc = OrchestrationService()
    low = svc.submit_document(numbered_document(300, "LO"), chunk_max_tokens=40, priority="low")["job_id"]
    time.sleep(0.5)
    # waiting work: batch messages in the queue plus the batches the fair scheduler still holds (4 chunks each)
    queued = queue_depth(svc.store.r, svc.settings.chunk_queue, key_prefix=svc.settings.broker_key_prefix)
    backlog = queued + get_scheduler().held_chunks() // 4
    t0 = time.monotonic()
    high = svc.submit_document(numbered_document(10, "HI"), chunk_max_tokens=40, priority="high")["job_id"]
    view_high = svc.wait(high, timeout=60)
    high_took = time.monotonic() - t0
    low_view = svc.view(low)
    assert view_high.status == JobStatus.SUCCESS, view_high.error
    assert backlog * 4 > 200, f"the low-priority backlog was only {backlog} messages of 4 chunks"
    assert not low_view.status.terminal, "the low job finished first: the high job waited behind it"
    remaining = low_view.progress.total - low_view.progress.completed
    assert remaining > 100, f"only {remaining} low chunks were left when the high job finished"
    print(f"\nFIGURE priority: high job (10 chunks) done in {high_took:.2f}s behind a {backlog}-message backlog; "
          f"{remaining} low chunks still waiting")
    svc.cancel_job(low)


def test_a_small_job_does_not_wait_behind_a_large_one_of_the_same_priority(make_stack: Any, fake_llm: Any) -> None:
    """Head-of-line: with first-come-first-served queues the small job finished with the large one."""
    make_stack(workers=1, concurrency=4, HUMANIZER_WORKER_CALLS="16", HUMANIZER_BATCH_SIZE="16")
    fake_llm.configure(latency=0.2, jitter=0.0)
    svc = OrchestrationService()
    big = svc.submit_document(numbered_document(480, "BG"), chunk_max_tokens=40)["job_id"]  # ~6 s of calls
    time.sleep(0.5)
    t0 = time.monotonic()
    small = svc.submit_document(numbered_document(4, "SM"), chunk_max_tokens=40)["job_id"]
    view = svc.wait(small, timeout=60, poll=0.02)
    took = time.monotonic() - t0
    big_view = svc.view(big)
    assert view.status == JobStatus.SUCCESS, view.error
    assert not big_view.status.terminal and big_view.progress.completed < 240, (
        f"the small job finished only when the large one was {big_view.progress.completed}/480 done"
    )
    print(f"\nFIGURE head-of-line: 4-chunk job done {took:.2f}s after submission behind a 480-chunk job "
          f"({big_view.progress.completed}/480 done then)")
    svc.cancel_job(big)


def test_jobs_of_equal_priority_progress_at_equal_rates(make_stack: Any, fake_llm: Any) -> None:
    make_stack(workers=1, concurrency=4, HUMANIZER_WORKER_CALLS="16", HUMANIZER_BATCH_SIZE="16")
    fake_llm.configure(latency=0.1, jitter=0.0)
    svc = OrchestrationService()
    first = svc.submit_document(numbered_document(320, "EA"), chunk_max_tokens=40)["job_id"]
    time.sleep(0.3)
    second = svc.submit_document(numbered_document(320, "EB"), chunk_max_tokens=40)["job_id"]
    assert poll_until(lambda: svc.view(second).progress.completed >= 64, timeout=60)
    a0, b0 = svc.view(first).progress.completed, svc.view(second).progress.completed
    assert poll_until(lambda: svc.view(second).progress.completed >= b0 + 96, timeout=60)
    da, db = svc.view(first).progress.completed - a0, svc.view(second).progress.completed - b0
    assert db >= 96 and 0.6 <= da / db <= 1.6, f"rates differ: first +{da}, second +{db} chunks"
    print(f"\nFIGURE equal rates: over one window the first job did +{da} chunks, the second +{db}")
    for job in (first, second):
        assert svc.wait(job, timeout=60).status == JobStatus.SUCCESS
