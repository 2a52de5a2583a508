"""Priorities and queues: a high-priority job overtakes a low-priority backlog; merges never wait."""

from __future__ import annotations

import time
from typing import Any

import pytest

from humanizer.jobs.models import JobStatus
from humanizer.monitoring.queues import queue_depth
from humanizer.orchestration import OrchestrationService
from tests.integration.conftest import numbered_document

pytestmark = pytest.mark.integration


def test_high_priority_job_finishes_before_low_backlog(make_stack: Any, fake_llm: Any) -> None:
    make_stack(workers=1, concurrency=2)
    fake_llm.configure(latency=0.1, jitter=0.0)
    svc = OrchestrationService()
    low = svc.submit_document(numbered_document(300, "LO"), chunk_max_tokens=40, priority="low")["job_id"]
    time.sleep(0.5)
    backlog = queue_depth(svc.store.r, svc.settings.chunk_queue, key_prefix=svc.settings.broker_key_prefix)
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
