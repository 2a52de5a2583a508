"""The fair scheduler's bookkeeping (``jobs/scheduler.py``) on a real Redis server: the Lua scripts that
hold, release and complete batches. No workers here: each test plays the workers' part (release, then
report back) so the order of releases can be read exactly."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import pytest
import redis

from humanizer.jobs.scheduler import Scheduler, worker_capacity
from humanizer.local.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    with RedisServer(appendonly=False) as server:
        yield redis.Redis.from_url(server.url, decode_responses=True)


@pytest.fixture()
def sched(client: redis.Redis) -> Scheduler:
    client.flushdb()
    return Scheduler(client, "t", min_window=1)


def _job(client: redis.Redis, job_id: str, status: str = "STARTED") -> None:
    client.hset(f"t:job:{job_id}", "status", status)


def _hold(sched: Scheduler, job_id: str, n: int, priority: str = "normal", tenant: str = "default") -> None:
    _job(sched.r, job_id)
    sched.hold(job_id, [[i] for i in range(n)], priority=priority, tenant=tenant)


def _serve(sched: Scheduler, rounds: int) -> list[str]:
    """Release one batch at a time (a window of one) and report it back: the order jobs are served in."""
    order = []
    for _ in range(rounds):
        released = sched.release()
        assert len(released) <= 1, "a window of one released more than one batch"
        if not released:
            break
        item = released[0]
        order.append(item.job_id)
        sched.complete(item.job_id, f"{item.job_id}:{item.indices[0]}")
    return order


def test_equal_priority_jobs_alternate(sched: Scheduler) -> None:
    _hold(sched, "a", 50)
    _hold(sched, "b", 50)
    order = _serve(sched, 40)
    counts = collections.Counter(order)
    assert counts == {"a": 20, "b": 20}, counts
    assert all(order[k] != order[k + 1] for k in range(len(order) - 1)), f"not round-robin: {order}"


def test_a_new_job_shares_from_now_on_and_is_not_starved_by_the_old_ones(sched: Scheduler) -> None:
    _hold(sched, "big", 1000)
    assert _serve(sched, 100) == ["big"] * 100
    _hold(sched, "small", 3)
    order = _serve(sched, 6)
    assert order == ["small", "big"] * 3, order
    # it did not get the 100 turns the big job had before it came (no credit for time not waiting)
    assert _serve(sched, 5) == ["big"] * 5


def test_priorities_get_weighted_shares_and_low_never_starves(sched: Scheduler) -> None:
    _hold(sched, "hi", 200, priority="high")
    _hold(sched, "lo", 200, priority="low")
    _hold(sched, "mid", 200, priority="normal")
    counts = collections.Counter(_serve(sched, 140))
    assert counts["hi"] == pytest.approx(80, abs=2) and counts["mid"] == pytest.approx(40, abs=2), counts
    assert counts["lo"] == pytest.approx(20, abs=2), counts


def test_released_batches_carry_the_celery_priority(sched: Scheduler) -> None:
    _hold(sched, "hi", 1, priority="high")
    _hold(sched, "lo", 1, priority="low")
    sched.register_worker("w", 10)
    levels = {r.job_id: r.level for r in sched.release()}
    assert levels == {"hi": 0, "lo": 6}


def test_tenants_share_by_weight_whatever_their_number_of_jobs(client: redis.Redis) -> None:
    client.flushdb()
    sched = Scheduler(client, "t", min_window=1, tenant_weights={"ns:b": 2})
    for k in range(3):
        _hold(sched, f"a{k}", 300, tenant="ns:a")
    _hold(sched, "b0", 300, tenant="ns:b")
    counts = collections.Counter(_serve(sched, 300))
    tenant_a = sum(n for job, n in counts.items() if job.startswith("a"))
    assert counts["b0"] == pytest.approx(200, abs=3) and tenant_a == pytest.approx(100, abs=3), counts
    assert min(counts[f"a{k}"] for k in range(3)) >= 30, counts  # and fairly among the tenant's own jobs


def test_window_follows_registered_workers(sched: Scheduler) -> None:
    _hold(sched, "a", 100)
    assert len(sched.release()) == 1  # no worker registered: the minimum window
    sched.register_worker("w1", 5, ttl=30)
    sched.register_worker("w2", 3, ttl=30)
    assert len(sched.release()) == 7  # 8 in the window, 1 already out
    assert sched.release() == []
    sched.register_worker("w1", 5, ttl=0.2)  # re-registration replaces, and this one lapses
    time.sleep(0.3)
    sched.complete("a", "a:0")
    assert sched.release() == [], "a lapsed worker's capacity still counted"
    snap = sched.snapshot()
    assert snap["window"] == 3 and snap["released"] == 7 and snap["workers"] == 1, snap


def test_a_spare_place_goes_only_to_a_job_with_nothing_released(sched: Scheduler) -> None:
    """The worker's spare thread: beyond the window, one more batch, and only for a job that has none out
    (a new job's first batch is taken at once instead of after the next batch to finish)."""
    _hold(sched, "big", 100)
    sched.register_worker("w", 4, ttl=30, spare=1)
    assert [r.job_id for r in sched.release()] == ["big"] * 4, "the window is the capacity, not the spare"
    _hold(sched, "small", 2)
    assert [r.job_id for r in sched.release()] == ["small"]  # the spare place, at once
    assert sched.release() == [], "a job with a batch out took a second spare place"
    assert sched.snapshot()["spare"] == 1
    sched.complete("big", "big:0")  # the window has a place again: the lowest pass is served
    sched.complete("small", "small:0")
    assert sorted(r.job_id for r in sched.release()) == ["big", "small"]
    fifo = Scheduler(sched.r, "t", fixed_window=5)  # a fixed window (FIFO dispatch) has no spare places
    assert fifo.snapshot()["spare"] == 0


def test_the_last_report_of_a_job_says_so_once(sched: Scheduler) -> None:
    _hold(sched, "a", 3)
    sched.register_worker("w", 10)
    assert [r.indices for r in sched.release()] == [[0], [1], [2]]
    assert sched.complete("a", "a:2") is False
    assert sched.complete("a", "a:0") is False
    assert sched.complete("a", "a:0") is False  # a redelivered batch reports back twice
    assert sched.complete("a", "a:1") is True
    assert sched.complete("a", "a:1") is False


def test_a_job_with_held_batches_is_not_complete(sched: Scheduler) -> None:
    _hold(sched, "a", 3)  # window of one: two stay held
    (released,) = sched.release()
    assert released.indices == [0]
    assert sched.complete("a", "a:0") is False, "the merge must wait for the held batches"


def test_ended_jobs_are_dropped_and_their_chunks_no_longer_count(sched: Scheduler) -> None:
    _hold(sched, "a", 40)
    _hold(sched, "b", 40)
    assert sched.held_chunks() == 80
    _job(sched.r, "a", "CANCELLED")
    sched.register_worker("w", 10)
    released = sched.release()
    assert {r.job_id for r in released} == {"b"} and len(released) == 10
    assert sched.held_chunks() == 30
    assert "a" not in sched.snapshot()["jobs"]


def test_forget_frees_the_window_and_a_redrive_round_completes_the_job(sched: Scheduler) -> None:
    _hold(sched, "a", 4)
    sched.register_worker("w", 2)
    assert len(sched.release()) == 2
    sched.forget("a")  # the reconciler re-drives: the two released messages are presumed lost
    assert sched.held_chunks() == 0 and sched.snapshot()["released"] == 0
    sched.hold("a", [[0], [1], [2], [3]], round_=1)
    out = sched.release()
    assert [r.round_ for r in out] == [1, 1] and sched.latest_round("a") == 1
    assert sched.complete("a", "a:0") is False, "a batch of the forgotten round counted"
    assert sched.complete("a", "a:0:r1") is False
    assert sched.complete("a", "a:1:r1") is False
    for r in sched.release():
        last = sched.complete("a", f"a:{r.indices[0]}:r1")
    assert last is True


def test_stale_released_batches_stop_counting(client: redis.Redis) -> None:
    client.flushdb()
    sched = Scheduler(client, "t", min_window=2, stale_seconds=0.3)
    _hold(sched, "a", 10)
    assert len(sched.release()) == 2
    assert sched.release() == []
    time.sleep(0.4)
    assert len(sched.release()) == 2, "messages lost long ago still held the window"


def test_worker_capacity() -> None:
    assert worker_capacity(8) == 8  # one batch per thread that takes messages
    assert worker_capacity(0) == 1
