"""What the autoscaler counts as work, on a real Redis with real Celery messages: queued (no worker runs,
so everything submitted stays queued), held by a live worker, left behind by a killed one (in flight until
the visibility timeout, then queued), per rate limiter (provider and model), and each worker's running
chunks as the scale-down's pod-deletion costs see them."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import redis

from humanizer.config import get_settings
from humanizer.jobs.dispatch import get_scheduler
from humanizer.jobs.models import JobRequest
from humanizer.jobs.store import JobStore
from humanizer.jobs.submit import submit_job
from humanizer.monitoring.queues import UNACKED_INDEX_KEY, queue_depth, unacked_by_queue
from humanizer_operator.handlers.autoscale import Autoscaler
from humanizer_operator.settings import OperatorSettings
from tests.integration.conftest import poll_until

pytestmark = pytest.mark.integration


def chunks(n: int, tag: str) -> list[str]:
    return [f"Paragraph {tag}-{i}: it is important to note that we leverage synergy." for i in range(n)]


def depth(client: redis.Redis, logical: str) -> int:
    """A queue's depth under this process's key prefix (queue name and kombu's global_keyprefix)."""
    s = get_settings()
    return queue_depth(client, s.queue_name(logical), key_prefix=s.broker_key_prefix)


def held(client: redis.Redis) -> dict[str, int]:
    """Held messages by logical queue (``humanize``/``control``), as kombu stores them under our prefix."""
    s = get_settings()
    logical = {s.queue_name(q): q for q in ("humanize", "control")}
    return {logical.get(q, q): n for q, n in unacked_by_queue(client, key_prefix=s.broker_key_prefix).items()}


def work_of(scaler: Autoscaler, client: redis.Redis) -> tuple[int, int]:
    """(queued, in flight) in chunks, as one autoscaler tick reads them."""
    work = scaler._work(client)
    return work.queued, work.in_flight


def test_small_jobs_count_as_their_chunks_not_as_whole_batches(make_stack: Any) -> None:
    make_stack(workers=0, HUMANIZER_BATCH_SIZE="16")
    s = get_settings()
    client = redis.Redis.from_url(s.redis_dsn, decode_responses=True)
    small = [submit_job(JobRequest(chunks=chunks(1, f"s{k}"), verify=False)).job_id for k in range(10)]
    submit_job(JobRequest(chunks=chunks(40, "big"), verify=False))  # batches of 16, 16 and 8

    # 13 batch messages: no worker is registered, so the fair scheduler queues its minimum window (4) and
    # holds the rest; 4 x 16 = 64 "chunks" counted as batches, plus the held chunks (exact)
    assert depth(client, "humanize") == 4
    held_chunks = get_scheduler().held_chunks()
    assert 50 - 4 * 16 < held_chunks < 50
    scaler = Autoscaler(OperatorSettings(), s)
    assert work_of(scaler, client) == (50, 0)  # queued, in flight: exactly the chunks waiting

    store = JobStore(client, prefix=s.key_prefix)
    store.incr(small[0], "done")  # a chunk reported done while its message is still in the list
    assert store.outstanding_chunks() == 49
    assert work_of(scaler, client) == (49, 0)
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
    assert depth(client, "control") == 1
    assert work_of(Autoscaler(OperatorSettings(), s), client) == (1, 0)


def test_held_batches_count_by_queue(make_stack: Any, fake_llm: Any) -> None:
    """Messages a worker holds (kombu's unacked hash, read in its real format) count as in flight."""
    make_stack(workers=1, concurrency=2, HUMANIZER_BATCH_SIZE="4")
    fake_llm.configure(latency=3.0, jitter=0.0)
    s = get_settings()
    client = redis.Redis.from_url(s.redis_dsn, decode_responses=True)
    submit_job(JobRequest(chunks=chunks(6, "held"), verify=False))  # batches of 4 and 2, both held
    assert poll_until(lambda: held(client) == {"humanize": 2}, timeout=10), held(client)
    assert work_of(Autoscaler(OperatorSettings(), s), client) == (0, 6)  # 2 messages × 4, capped at 6


def test_a_killed_workers_batches_are_in_flight_until_the_visibility_timeout(make_stack: Any, fake_llm: Any) -> None:
    """kill -9 leaves the worker's messages in kombu's unacked hash. Until their visibility timeout they
    may still be a slow live worker's, so they count in flight; past it they are about to be restored to
    the queue: queued, not in flight (they need a worker, and no longer hold one)."""
    stack = make_stack(workers=1, concurrency=2, HUMANIZER_BATCH_SIZE="4")
    fake_llm.configure(latency=30.0, jitter=0.0)  # the calls never finish before the kill
    s = get_settings()
    client = redis.Redis.from_url(s.redis_dsn, decode_responses=True)
    submit_job(JobRequest(chunks=chunks(6, "dead"), verify=False))
    assert poll_until(lambda: held(client) == {"humanize": 2}, timeout=10), held(client)
    stack.pool.alive()[0].kill()
    assert held(client) == {"humanize": 2}  # left behind, in kombu's real format
    scaler = Autoscaler(OperatorSettings(), s)
    assert work_of(scaler, client) == (0, 6)

    # the same entries, delivered longer ago than CELERY_VISIBILITY_TIMEOUT (the index holds the times)
    index = s.broker_key_prefix + UNACKED_INDEX_KEY
    tags = client.zrange(index, 0, -1)
    assert len(tags) == 2
    client.zadd(index, {tag: time.time() - s.celery_visibility_timeout - 1 for tag in tags})
    work = scaler._work(client)
    assert (work.queued, work.in_flight, work.expired) == (6, 0, 2)


def test_work_per_rate_limiter(make_stack: Any) -> None:
    """Each (provider, model) has its own limiter: the jobs' outstanding chunks are counted per limiter,
    named as the workers name theirs (a job without a model uses OPENAI_MODEL)."""
    make_stack(workers=0)
    s = get_settings()
    client = redis.Redis.from_url(s.redis_dsn, decode_responses=True)
    submit_job(JobRequest(chunks=chunks(40, "a"), verify=False))
    submit_job(JobRequest(chunks=chunks(10, "b"), verify=False, model="other-model"))
    submit_job(JobRequest(chunks=chunks(3, "c"), verify=False, provider="echo"))
    work = Autoscaler(OperatorSettings(), s)._work(client)
    assert work.limiter_work == {f"openai:{s.openai_model}": 40, "openai:other-model": 10, f"echo:{s.openai_model}": 3}
    assert work.tokens_per_chunk is None  # nothing ended yet: the policy's estimate is used


def test_tokens_per_chunk_measured_from_finished_chunks(make_stack: Any, fake_llm: Any) -> None:
    make_stack(workers=1, concurrency=2, HUMANIZER_BATCH_SIZE="2")
    fake_llm.configure(latency=0.2, jitter=0.0)
    s = get_settings()
    client = redis.Redis.from_url(s.redis_dsn, decode_responses=True)
    scaler = Autoscaler(OperatorSettings(), s)
    job_id = submit_job(JobRequest(chunks=chunks(12, "tok"), verify=False)).job_id
    scaler._work(client)  # the first reading: nothing to compare with
    store = JobStore(client, prefix=s.key_prefix)
    assert poll_until(lambda: int(store.meta(job_id).get("done", 0)) >= 4, timeout=20)
    scaler._work(client)
    assert scaler.tokens_per_chunk is not None
    meta = store.meta(job_id)
    per_chunk = (int(meta["tokens_in"]) + int(meta["tokens_out"])) / int(meta["done"])
    assert 0.5 * per_chunk <= scaler.tokens_per_chunk <= 2 * per_chunk, (scaler.tokens_per_chunk, per_chunk)


def test_each_workers_running_chunks_from_inspect_active(make_stack: Any, fake_llm: Any) -> None:
    """The scale-down's source for pod-deletion costs, against a real worker: its node name's host part
    names the pod (here the machine: LocalStack names workers ``w0@<hostname>``)."""
    make_stack(workers=1, concurrency=2, HUMANIZER_BATCH_SIZE="4")
    fake_llm.configure(latency=4.0, jitter=0.0)
    s = get_settings()
    client = redis.Redis.from_url(s.redis_dsn, decode_responses=True)
    scaler = Autoscaler(OperatorSettings(inspect_timeout_seconds=2.0), s)
    host = socket.gethostname()
    assert scaler.pod_in_flight([host, "no-such-pod"]) == {host: 0, "no-such-pod": None}
    submit_job(JobRequest(chunks=chunks(6, "busy"), verify=False))  # batches of 4 and 2, both running
    assert poll_until(lambda: held(client) == {"humanize": 2}, timeout=10)
    assert poll_until(lambda: scaler.pod_in_flight([host]) == {host: 6}, timeout=10), scaler.pod_in_flight([host])
