"""Call slots: a worker process never has more provider calls in flight than HUMANIZER_WORKER_CALLS,
however many batch tasks it holds, and every chunk still gets done once."""

from __future__ import annotations

from typing import Any

import pytest

from humanizer.jobs.models import JobStatus
from humanizer.orchestration import OrchestrationService
from tests.integration.conftest import markers_in, numbered_document

pytestmark = pytest.mark.integration


def test_calls_in_flight_are_capped_per_worker(make_stack: Any, fake_llm: Any) -> None:
    # holds 4 batches x 4 chunks = 16 chunks, but may only call for 3 of them at a time
    make_stack(workers=1, concurrency=4, HUMANIZER_WORKER_CALLS="3")
    fake_llm.configure(latency=0.1, jitter=0.0)
    svc = OrchestrationService()
    job_id = svc.submit_document(numbered_document(40, "S"), chunk_max_tokens=40)["job_id"]
    view = svc.wait(job_id, timeout=60)
    assert view.status == JobStatus.SUCCESS, view.error
    stats = fake_llm.stats()
    assert stats["max_in_flight"] == 3, f"{stats['max_in_flight']} calls in flight with 3 slots"
    assert stats["total"] == 40
    assert markers_in(view.humanized_text or "", "S") == [f"S-{i:04d}" for i in range(40)]
