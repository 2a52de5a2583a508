"""The heartbeat a real worker keeps fresh (what the chart's worker probes check), through a Redis outage."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from humanizer.local.stack import LocalStack
from humanizer.orchestration import OrchestrationService
from humanizer.worker import heartbeat

from .conftest import numbered_document, poll_until, wait_done

pytestmark = pytest.mark.integration


def probe(path: Path, max_age: float) -> int:
    """The chart's exec probe, as the kubelet runs it."""
    return subprocess.run([sys.executable, "-m", "humanizer.worker.heartbeat", str(path), str(max_age)],
                          capture_output=True, timeout=30).returncode


def test_worker_heartbeat_stays_fresh_while_busy_and_goes_stale_without_redis(
    make_stack: Any, fake_llm: Any, tmp_path: Path
) -> None:
    path = tmp_path / "worker.heartbeat"
    stack: LocalStack = make_stack(workers=1, concurrency=4, HUMANIZER_WORKER_HEARTBEAT_FILE=str(path),
                                   HUMANIZER_WORKER_HEARTBEAT_SECONDS="0.5")
    assert poll_until(lambda: heartbeat.is_fresh(path, 2), timeout=20), "the ready worker wrote no heartbeat"
    assert probe(path, 2) == 0
    # busy: every pool thread waits on slow provider calls; the consumer loop still beats
    fake_llm.configure(latency=1.5)
    svc = OrchestrationService()
    job_id = svc.submit_document(numbered_document(40, "H"), chunk_max_tokens=40)["job_id"]
    for _ in range(6):
        time.sleep(0.5)
        assert heartbeat.is_fresh(path, 1.5), heartbeat.age(path)
    assert wait_done(svc, job_id, timeout=90).status.value == "SUCCESS"
    fake_llm.configure(latency=0.02)
    # Redis gone: the consumer reconnects, its timer entry is cancelled, the file ages past the limit
    stack.redis.kill()
    assert poll_until(lambda: not heartbeat.is_fresh(path, 3), timeout=20), heartbeat.age(path)
    assert probe(path, 3) == 1
    # Redis back: the consumer restarts and beats again
    stack.redis.start()
    assert poll_until(lambda: heartbeat.is_fresh(path, 1.5), timeout=60), heartbeat.age(path)
    assert probe(path, 2) == 0
