"""What the autoscaler counts as work, on a real Redis with real queued Celery messages (no worker runs,
so everything submitted stays queued)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from humanizer.config import get_settings
from humanizer.jobs.models import JobRequest
from humanizer.jobs.store import JobStore
from humanizer.jobs.submit import submit_job
from humanizer.monitoring.queues import queue_depth, unacked_by_queue
from humanizer_operator.handlers.autoscale import Autoscaler
from humanizer_operator.settings import OperatorSettings
from tests.integration.conftest import poll_until

pytestmark = pytest.mark.integration


def chunks(n: int, tag: str) -> list[str]:
    return [f"Paragraph {tag}-{i}: it is important to note that we leverage synergy." for i in range(n)]


def test_small_jobs_count_as_their_chunks_not_as_whole_batches(make_stack: Any) -> None:
    make_stack(workers=0, HUMANIZER_BATCH_SIZE="16")
    s = get_settings()
    client = redis.Redis.from_url(s.redis_dsn, decode_responses=True)
    small = [submit_job(JobRequest(chunks=chunks(1, f"s{k}"), verify=False)).job_id for k in range(10)]
    submit_job(JobRequest(chunks=chunks(40, "big"), verify=False))  # batches of 16, 16 and 8

    assert queue_depth(client, "humanize") == 13  # messages: 13 × 16 = 208 "chunks" counted as batches
    scaler = Autoscaler(OperatorSettings(), s)
    assert scaler._work(client)[:2] == (50, 0)  # queued, in flight: exactly the chunks waiting

    store = JobStore(client, prefix=s.key_prefix)
    store.incr(small[0], "done")  # a chunk reported done while its message is still in the list
    assert store.outstanding_chunks() == 49
    assert scaler._work(client)[:2] == (49, 0)
    assert store.outstanding_chunks(max_jobs=5) is None  # too many unfinished jobs to read: the bound is used


def test_a_merge_waiting_alone_is_work(make_stack: Any) -> None:
    """A document of code only needs no model: its job sends just the merge. From zero workers that
    message must still count, or a scaled-to-zero Deployment would never wake up for it."""
    make_stack(workers=0)
    s = get_settings()
    client = redis.Redis.from_url(s.redis_dsn, decode_responses=True)
    job = submit_job(JobRequest(text="```python\nprint('only code here')\n```\n", verify=False))
    assert job.model_chunks == 0
    assert JobStore(client, prefix=s.key_prefix).outstanding_chunks() == 0
    assert queue_depth(client, "control") == 1
    assert Autoscaler(OperatorSettings(), s)._work(client)[:2] == (1, 0)


def test_held_batches_count_by_queue(make_stack: Any, fake_llm: Any) -> None:
    """Messages a worker holds (kombu's unacked hash, read in its real format) count as in flight."""
    make_stack(workers=1, concurrency=2, HUMANIZER_BATCH_SIZE="4")
    fake_llm.configure(latency=3.0, jitter=0.0)
    s = get_settings()
    client = redis.Redis.from_url(s.redis_dsn, decode_responses=True)
    submit_job(JobRequest(chunks=chunks(6, "held"), verify=False))  # batches of 4 and 2, both held
    assert poll_until(lambda: unacked_by_queue(client) == {"humanize": 2}, timeout=10), unacked_by_queue(client)
    assert Autoscaler(OperatorSettings(), s)._work(client)[:2] == (0, 6)  # 2 messages × 4, capped at 6
