"""A worker told to stop while Redis is gone leaves within the watchdog's delay instead of waiting for
its running chunks, whose outputs can no longer be stored (without the watchdog the same test takes
~16 s here: the stores retry against the missing Redis; on the node tier a worker outlived a namespace
deletion's minute this way)."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from humanizer.orchestration import OrchestrationService
from tests.integration.conftest import numbered_document, poll_until

pytestmark = pytest.mark.integration


def test_sigterm_with_redis_gone_exits_after_the_watchdog_delay(make_stack: Any, fake_llm: Any) -> None:
    stack = make_stack(workers=1, concurrency=4, HUMANIZER_WORKER_SHUTDOWN_REDIS_GONE_SECONDS="3",
                       CELERY_TASK_SOFT_TIME_LIMIT="100", CELERY_TASK_TIME_LIMIT="110",
                       CELERY_VISIBILITY_TIMEOUT="200")
    fake_llm.configure(latency=4.0)  # the calls end after Redis is gone: storing their outputs then fails slowly
    svc = OrchestrationService()
    job_id = svc.submit_document(numbered_document(8, "W"), chunk_max_tokens=40)["job_id"]
    assert poll_until(lambda: svc.view(job_id).status.value in ("STARTED", "PROGRESS"), timeout=20)
    time.sleep(2)  # the provider calls (4 s each) are in flight
    assert not svc.view(job_id).status.terminal
    (worker,) = stack.pool.alive()
    stack.redis.kill()
    t0 = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.proc is not None
    worker.proc.wait(timeout=25)
    took = time.monotonic() - t0
    assert took < 12, f"the worker took {took:.1f}s to leave with Redis gone (watchdog 3 s; ~16 s without it)"
    assert took >= 3, f"the worker left after {took:.1f}s, before the watchdog's delay"
    print(f"\nFIGURE worker shutdown with Redis gone: {took:.1f}s (watchdog 3 s)")
