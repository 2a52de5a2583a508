"""The autoscaler's pure decision: clamp, stabilisation window, in-flight floor, rate-limit cap,
scale to zero, Redis-unreadable hold; the units of work (chunks queued, chunks in flight, chunks a pod
handles at once); held messages past the visibility timeout; the scale-down victims' deletion costs."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humanizer.monitoring.queues import held_by_age
from humanizer_operator.autoscaler import (
    MAX_DELETION_COST,
    REDIS_UNAVAILABLE,
    SCALE_DOWN,
    SCALE_UP,
    STABILIZING,
    STEADY,
    BrokerCounts,
    Observation,
    ScalerState,
    ScalingPolicy,
    chunks_by_pod,
    decide,
    deletion_costs,
    limiter_concurrency,
    pod_hostname,
    rate_limit_cap,
    recommend,
    running,
    tokens_per_chunk_estimate,
    work_in_chunks,
)

pytestmark = pytest.mark.unit

POLICY = ScalingPolicy(min_replicas=1, max_replicas=10, target_per_worker=8, worker_calls=4,
                       scale_down_stabilization_seconds=60)


def rec(policy: ScalingPolicy, queued: int, in_flight: int, current: int = 10, chunk_seconds: float = 2.0,
        **kw: Any) -> int:
    return recommend(policy, Observation(queued, in_flight, current, 0.0, chunk_seconds, **kw))


def tick(policy: ScalingPolicy, state: ScalerState, queued: int | None, in_flight: int | None, current: int,
         now: float, chunk_seconds: float = 2.0) -> tuple[int, str]:
    d = decide(policy, Observation(queued, in_flight, current, now, chunk_seconds), state)
    return d.desired, d.reason


def test_recommendation_is_work_over_target_clamped() -> None:
    assert rec(POLICY, 0, 0) == 1
    assert rec(POLICY, 8, 0) == 1
    assert rec(POLICY, 9, 0) == 2
    assert rec(POLICY, 40, 8) == 6
    assert rec(POLICY, 400, 0) == 10  # max


def test_scale_up_is_immediate() -> None:
    state = ScalerState()
    assert tick(POLICY, state, 0, 0, 1, 0.0) == (1, STEADY)
    assert tick(POLICY, state, 400, 0, 1, 1.0) == (10, SCALE_UP)


def test_scale_down_waits_for_the_window() -> None:
    state = ScalerState()
    assert tick(POLICY, state, 400, 0, 1, 0.0)[1] == SCALE_UP
    assert tick(POLICY, state, 0, 0, 10, 1.0) == (10, STABILIZING)
    assert tick(POLICY, state, 0, 0, 10, 59.0) == (10, STABILIZING)
    assert tick(POLICY, state, 0, 0, 10, 61.0) == (1, SCALE_DOWN)


def test_scale_down_goes_to_the_highest_recommendation_in_the_window() -> None:
    state = ScalerState()
    tick(POLICY, state, 80, 0, 1, 0.0)  # 10
    tick(POLICY, state, 40, 0, 10, 30.0)  # 5
    assert tick(POLICY, state, 0, 0, 10, 61.0) == (5, SCALE_DOWN)  # the 10 aged out, the 5 did not
    assert tick(POLICY, state, 0, 0, 5, 91.0) == (1, SCALE_DOWN)


def test_a_restarted_operator_does_not_shrink_at_once() -> None:
    state = ScalerState()
    assert tick(POLICY, state, 0, 0, 6, 100.0) == (6, STABILIZING)
    assert tick(POLICY, state, 0, 0, 6, 161.0) == (1, SCALE_DOWN)


def test_never_below_what_is_running() -> None:
    policy = ScalingPolicy(min_replicas=1, max_replicas=10, target_per_worker=100, worker_calls=4,
                           scale_down_stabilization_seconds=0)
    assert rec(policy, 0, 20, current=8) == 5  # 20 running chunks need 5 pods of 4 slots
    state = ScalerState(seeded=True)
    assert tick(policy, state, 0, 20, 8, 0.0) == (5, SCALE_DOWN)


# ---- item 8: consistent units ---------------------------------------------------------------------
# The chart's defaults: a pod has 64 call slots (HUMANIZER_WORKER_CALLS) and holds 8 batch tasks
# (CELERY_WORKER_CONCURRENCY) of 16 chunks (HUMANIZER_BATCH_SIZE): 128 chunks, twice what it runs.
CHART = ScalingPolicy(min_replicas=1, max_replicas=20, target_per_worker=64, worker_calls=64,
                      scale_down_stabilization_seconds=300)


def test_four_saturated_pods_and_an_empty_queue_stay_four() -> None:
    """The end of a burst: 4 pods each hold 8 batch messages (32 unacked) of 16 chunks of a big job,
    nothing is queued. That is 512 chunks held, of which 4 x 64 = 256 run; the other 256 wait inside
    those same pods for a slot, where no new pod could take them. It used to ask for 512 / 64 = 8."""
    counts = BrokerCounts(queued=0, held=4 * 8)
    queued, in_flight = work_in_chunks(counts, batch_size=16, outstanding=5000)
    assert (queued, in_flight) == (0, 512)
    assert running(CHART, in_flight, current=4) == 256
    assert rec(CHART, queued, in_flight, current=4) == 4
    state = ScalerState()
    d = decide(CHART, Observation(queued, in_flight, 4, 0.0), state)
    assert (d.desired, d.reason) == (4, STEADY), d
    # and the same pods with a backlog behind them: the queue asks for more, the held work does not
    assert rec(CHART, 64 * 4, in_flight, current=4) == 8


def test_held_work_keeps_the_pods_that_hold_it() -> None:
    # scaled down to 1 while 3 terminating pods finish their batches: held work belongs to them and asks
    # for no new pod (it used to scale straight back up)
    assert rec(CHART, 0, 4 * 128, current=1) == 1
    # half-busy pods: 4 pods running 100 chunks between them are sized by those 100 chunks
    zero_window = ScalingPolicy(target_per_worker=64, worker_calls=64, scale_down_stabilization_seconds=0)
    assert rec(zero_window, 0, 100, current=4) == 2
    # scale from zero stays possible for queued work; held work with no pod left asks for none
    assert rec(CHART, 10, 0, current=0) == 1


def test_expired_held_messages_are_queued_not_in_flight() -> None:
    """A killed pod's unacked messages past the visibility timeout are not live work: they count as
    queued (kombu restores them to the queue, and only a running worker restores them)."""
    live_only = work_in_chunks(BrokerCounts(held=2), batch_size=16, outstanding=None)
    assert live_only == (0, 32)
    dead = work_in_chunks(BrokerCounts(held=0, expired=2), batch_size=16, outstanding=None)
    assert dead == (32, 0)
    # they ask for pods as queued work does (they will be restored and need a worker), where held work
    # would only keep the pods that hold it: 8 expired batches of 16 = 128 chunks, 1 pod -> 2
    expired_work = work_in_chunks(BrokerCounts(expired=8), 16, None)
    assert rec(CHART, *expired_work, current=1) == 2
    assert rec(CHART, *work_in_chunks(BrokerCounts(held=8), 16, None), current=1) == 1
    assert rec(CHART, *work_in_chunks(BrokerCounts(expired=1), 16, 3), current=4) == 1
    # from zero they wake a worker (scale to zero is on: nothing else would restore them)
    zero = ScalingPolicy(min_replicas=0, max_replicas=5, scale_to_zero=True, scale_down_stabilization_seconds=0)
    assert rec(zero, *work_in_chunks(BrokerCounts(expired=1), 16, 16), current=0) == 1
    assert rec(zero, *work_in_chunks(BrokerCounts(), 16, 0), current=0) == 0
    # control messages: one each, never capped by the outstanding chunks
    assert work_in_chunks(BrokerCounts(control_queued=1, control_held=2, control_expired=3), 16, 0) == (4, 2)


def test_outstanding_chunks_cap_held_first_then_queued() -> None:
    counts = BrokerCounts(queued=13, held=2, expired=1)
    assert work_in_chunks(counts, 16, None) == (14 * 16, 32)
    assert work_in_chunks(counts, 16, 50) == (18, 32)  # 50 left: 32 held, the rest queued
    assert work_in_chunks(counts, 16, 20) == (0, 20)


class _UnackedRedis:
    """The two reads ``held_by_age`` makes, over kombu's layout: the hash and the delivery-time index."""

    def __init__(self, entries: dict[str, tuple[str, float]]) -> None:
        self.entries = entries  # tag -> (queue, delivered at)

    def zrangebyscore(self, key: str, low: str, high: float) -> list[str]:
        assert key == "unacked_index" and low == "-inf"
        return [tag for tag, (_q, at) in self.entries.items() if at <= high]

    def hscan_iter(self, key: str, count: int = 10) -> Iterator[tuple[str, str]]:
        assert key == "unacked"
        import json

        for tag, (queue, _at) in self.entries.items():
            yield tag, json.dumps([{"headers": {"id": f"task-{tag}"}, "body": ""}, "", queue])


def test_held_messages_split_at_the_visibility_timeout() -> None:
    now = 10_000.0
    client = _UnackedRedis({
        "a": ("humanize", now - 5), "b": ("humanize", now - 3599), "c": ("humanize", now - 3601),
        "d": ("control", now - 7200), "e": ("humanize", now - 3600),
    })
    live, expired = held_by_age(client, visibility_timeout=3600, now=now)  # type: ignore[arg-type]
    assert live == collections.Counter({"humanize": 2})
    assert expired == collections.Counter({"humanize": 2, "control": 1})  # kombu restores score <= now - timeout


# ---- item 9: rate limits --------------------------------------------------------------------------
def test_rate_limit_caps_the_pool() -> None:
    policy = ScalingPolicy(min_replicas=1, max_replicas=50, target_per_worker=4, worker_calls=4, rate_limit_rpm=120)
    # 120 rpm x 2 s per chunk = 4 chunks at once = 1 pod of 4 slots
    assert rate_limit_cap(policy, 2.0) == 1
    assert rec(policy, 400, 0, chunk_seconds=2.0) == 1
    assert rec(policy, 400, 0, chunk_seconds=10.0) == 5  # slower chunks: more can be in flight
    assert rate_limit_cap(POLICY, 2.0) is None


def test_tokens_per_minute_cap() -> None:
    # 600 rpm alone: 600 x 6 s / 60 = 60 chunks at once = 15 pods of 4.
    rpm_only = ScalingPolicy(max_replicas=100, target_per_worker=4, worker_calls=4, rate_limit_rpm=600)
    assert limiter_concurrency(rpm_only, 6.0) == pytest.approx(60.0)
    assert rate_limit_cap(rpm_only, 6.0) == 15
    # plus 120,000 tpm at 1,000 tokens a chunk: 120 chunks a minute (the smaller), x 6 s / 60 = 12 at once
    both = ScalingPolicy(max_replicas=100, target_per_worker=4, worker_calls=4, rate_limit_rpm=600,
                         rate_limit_tpm=120_000, tokens_per_chunk=1000)
    assert limiter_concurrency(both, 6.0) == pytest.approx(12.0)
    assert rate_limit_cap(both, 6.0) == 3
    assert rec(both, 1000, 0, chunk_seconds=6.0) == 3
    # measured tokens per chunk win over the policy's estimate: at 300 tokens TPM allows 400 chunks a
    # minute, still below RPM's 600: 400 x 6 / 60 = 40 at once = 10 pods
    assert rate_limit_cap(both, 6.0, tokens_per_chunk=300) == 10
    # 100 tokens -> tpm allows 1200/min, rpm 600 binds again: 15 pods
    assert rate_limit_cap(both, 6.0, tokens_per_chunk=100) == 15
    # tpm alone
    tpm_only = ScalingPolicy(max_replicas=100, worker_calls=64, target_per_worker=64, rate_limit_tpm=1_000_000)
    # 1,000,000 / 2,000 tokens = 500 chunks a minute x 30 s / 60 = 250 at once = 4 pods of 64
    assert rate_limit_cap(tpm_only, 30.0, tokens_per_chunk=2000) == 4


def test_headroom_keeps_the_cap_below_the_limit() -> None:
    # 3,000 rpm x 1.28 s / 60 = 64 chunks at once: exactly 1 pod of 64 without headroom ...
    exact = ScalingPolicy(max_replicas=10, worker_calls=64, target_per_worker=64, rate_limit_rpm=3000)
    assert limiter_concurrency(exact, 1.28) == pytest.approx(64.0)
    assert rate_limit_cap(exact, 1.28) == 1
    # ... and 2 pods when the limit is 3,100: 66.1 at once
    over = ScalingPolicy(max_replicas=10, worker_calls=64, target_per_worker=64, rate_limit_rpm=3100)
    assert rate_limit_cap(over, 1.28) == 2
    # the limiter paces 2% below the limit (HUMANIZER_RATE_LIMIT_HEADROOM=0.02): 3,038 rpm -> 64.8 -> 2 pods;
    # at 5%, 2,945 rpm -> 62.8 chunks -> 1 pod: the pod more would only wait in the limiter
    assert rate_limit_cap(ScalingPolicy(max_replicas=10, rate_limit_rpm=3100, rate_limit_headroom=0.02), 1.28) == 2
    assert rate_limit_cap(ScalingPolicy(max_replicas=10, rate_limit_rpm=3100, rate_limit_headroom=0.05), 1.28) == 1
    # tpm too: 200,000 tpm x 0.9 / 1,000 tokens = 180 chunks/min x 10 s / 60 = 30 at once -> 8 pods of 4
    tpm = ScalingPolicy(max_replicas=50, worker_calls=4, target_per_worker=4, rate_limit_tpm=200_000,
                        rate_limit_headroom=0.1, tokens_per_chunk=1000)
    assert limiter_concurrency(tpm, 10.0) == pytest.approx(30.0)
    assert rate_limit_cap(tpm, 10.0) == 8


def test_limits_are_per_provider_and_model() -> None:
    """Each (provider, model) has its own limiter with the configured limits: two models with work
    can run twice what one can; a model with little work adds only that work."""
    policy = ScalingPolicy(max_replicas=100, target_per_worker=4, worker_calls=4, rate_limit_rpm=120)
    # 120 rpm x 10 s / 60 = 20 chunks at once per limiter
    assert rate_limit_cap(policy, 10.0, limiter_work={"openai:gpt-4o": 500}) == 5
    assert rate_limit_cap(policy, 10.0, limiter_work={"openai:gpt-4o": 500, "openai:gpt-4o-mini": 500}) == 10
    assert rate_limit_cap(policy, 10.0, limiter_work={"openai:gpt-4o": 500, "openai:gpt-4o-mini": 6}) == 7  # 26/4
    assert rate_limit_cap(policy, 10.0, limiter_work={"openai:gpt-4o": 500, "offline:": 0}) == 5  # no work: no share
    assert rec(policy, 1000, 0, chunk_seconds=10.0, limiter_work={"openai:a": 500, "openai:b": 500}) == 10
    assert rec(policy, 1000, 0, chunk_seconds=10.0) == 5  # unknown: one limiter
    # the cap never goes below one pod (the floor rules decide about zero)
    assert rate_limit_cap(policy, 10.0, limiter_work={"openai:a": 0}) == 1


def test_the_smallest_of_the_caps_wins() -> None:
    # rpm 6,000 -> 100 chunks/s; tpm 300,000 at 500 tokens -> 600 chunks/min = 10/s; x 3 s = 30 at once;
    # one model with 12 chunks left: 12 at once. Pods of 4 slots: 3 pods, whatever the backlog says
    policy = ScalingPolicy(max_replicas=100, target_per_worker=4, worker_calls=4, rate_limit_rpm=6000,
                           rate_limit_tpm=300_000)
    assert rate_limit_cap(policy, 3.0, tokens_per_chunk=500) == 8  # 30 / 4
    assert rate_limit_cap(policy, 3.0, tokens_per_chunk=500, limiter_work={"openai:m": 12}) == 3
    assert rec(policy, 400, 0, chunk_seconds=3.0, tokens_per_chunk=500) == 8


def test_tokens_per_chunk_is_measured_from_the_jobs() -> None:
    before = {"a": (10, 5_000), "b": (0, 0)}
    after = {"a": (20, 10_000), "b": (4, 3_200), "new": (100, 0)}  # "new": first seen, not counted
    # 14 chunks ended with 8,200 tokens between the readings: 585.7 a chunk
    assert tokens_per_chunk_estimate(before, after, None) == pytest.approx(8200 / 14)
    assert tokens_per_chunk_estimate(before, after, 1000.0) == pytest.approx(1000 + 0.2 * (8200 / 14 - 1000))
    assert tokens_per_chunk_estimate(after, after, 700.0) == 700.0  # nothing ended: unchanged
    assert tokens_per_chunk_estimate({}, after, None) is None


def test_scale_to_zero_is_opt_in() -> None:
    zero = ScalingPolicy(min_replicas=0, max_replicas=5, target_per_worker=8, worker_calls=4,
                         scale_down_stabilization_seconds=0, scale_to_zero=True)
    assert rec(zero, 0, 0) == 0
    assert rec(zero, 1, 0) == 1
    assert rec(zero, 0, 1) == 1
    no_zero = ScalingPolicy(min_replicas=0, max_replicas=5, target_per_worker=8, worker_calls=4)
    assert rec(no_zero, 0, 0) == 1  # min 0 without scale_to_zero still keeps one worker
    state = ScalerState(seeded=True)
    assert tick(zero, state, 0, 0, 2, 0.0) == (0, SCALE_DOWN)
    assert tick(zero, state, 3, 0, 0, 1.0) == (1, SCALE_UP)


def test_redis_unreadable_holds_the_current_size() -> None:
    state = ScalerState()
    assert tick(POLICY, state, None, None, 7, 0.0) == (7, REDIS_UNAVAILABLE)
    assert tick(POLICY, state, 5, None, 3, 1.0) == (3, REDIS_UNAVAILABLE)
    assert state.recommendations == []  # an unreadable tick records nothing


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        ScalingPolicy(min_replicas=5, max_replicas=2)
    with pytest.raises(ValueError):
        ScalingPolicy(target_per_worker=0)
    with pytest.raises(ValueError):
        ScalingPolicy(rate_limit_headroom=1.0)
    with pytest.raises(ValueError):
        ScalingPolicy(rate_limit_tpm=-1)


# ---- item 7: scale-down victims -------------------------------------------------------------------
def test_idle_pods_cost_least() -> None:
    costs = deletion_costs({"w-a": 0, "w-b": 37, "w-c": 0, "w-d": 3})
    assert costs == {"w-a": 0, "w-b": 37, "w-c": 0, "w-d": 3}
    # scaling 4 -> 2 removes the two cheapest: the idle ones
    assert sorted(costs, key=lambda p: costs[p])[:2] == ["w-a", "w-c"]
    # a pod whose worker did not answer is never taken for idle: it costs more than every known one
    assert deletion_costs({"w-a": 0, "w-b": 5, "w-x": None}) == {"w-a": 0, "w-b": 5, "w-x": 6}
    assert deletion_costs({"w-x": None, "w-y": None}) == {"w-x": 1, "w-y": 1}
    assert deletion_costs({"w-a": 10**12, "w-b": -3}) == {"w-a": MAX_DELETION_COST, "w-b": 0}  # an int32


def test_running_chunks_per_pod_from_inspect_active() -> None:
    batch = {"name": "humanizer.humanize_batch", "args": ["job1", [0, 1, 2, 3]]}
    small = {"name": "humanizer.humanize_batch", "args": ["job2", [7]]}
    merge = {"name": "humanizer.merge", "args": ["job1"]}
    replies = {
        "celery@worker-7d9f-abcde": [batch, batch, merge],
        "celery@worker-7d9f-fghij": [],
        "celery@worker-7d9f-klmno": [small],
        "celery@some-other-release-pod": [batch],
    }
    pods = ["worker-7d9f-abcde", "worker-7d9f-fghij", "worker-7d9f-klmno", "worker-7d9f-silent"]
    counts = chunks_by_pod(replies, pods)
    assert counts == {"worker-7d9f-abcde": 9, "worker-7d9f-fghij": 0, "worker-7d9f-klmno": 1,
                      "worker-7d9f-silent": None}
    assert deletion_costs(counts) == {"worker-7d9f-abcde": 9, "worker-7d9f-fghij": 0, "worker-7d9f-klmno": 1,
                                      "worker-7d9f-silent": 10}


def test_a_long_pod_name_matches_its_hostname() -> None:
    long = "humanizer-with-a-very-long-release-name-worker-5f8d7c9b6d9-x7k2p"  # 64 characters
    assert len(long) == 64 and pod_hostname(long) == long[:63]
    cut_at_dash = "a" * 62 + "-bc"
    assert pod_hostname(cut_at_dash) == "a" * 62  # no trailing '-'
    assert chunks_by_pod({f"celery@{long[:63]}": [{"name": "x"}]}, [long]) == {long: 1}


policies = st.builds(
    ScalingPolicy,
    min_replicas=st.integers(0, 5),
    max_replicas=st.integers(5, 40),
    target_per_worker=st.integers(1, 50),
    worker_calls=st.integers(1, 16),
    scale_down_stabilization_seconds=st.floats(0, 600),
    scale_to_zero=st.booleans(),
    rate_limit_rpm=st.sampled_from([0.0, 30.0, 600.0, 10_000.0]),
    rate_limit_tpm=st.sampled_from([0.0, 10_000.0, 1_000_000.0]),
    rate_limit_headroom=st.sampled_from([0.0, 0.02, 0.2]),
)
observations = st.lists(
    st.tuples(st.integers(0, 5000), st.integers(0, 500), st.floats(0.1, 30.0)), min_size=1, max_size=30
)


@settings(max_examples=300, deadline=None)
@given(policies, observations, st.integers(0, 50))
def test_invariants(policy: ScalingPolicy, ticks: list[tuple[int, int, float]], start: int) -> None:
    state = ScalerState()
    current = start
    for i, (queued, in_flight, step) in enumerate(ticks):
        now = i * 10.0 + step
        d = decide(policy, Observation(queued, in_flight, current, now), state)
        floor = 0 if (policy.scale_to_zero and queued + in_flight == 0) else max(1, policy.min_replicas)
        busy = running(policy, in_flight, current)
        if queued == 0:  # held work alone never asks for pods beyond those holding it
            assert d.recommended <= max(current, floor)
        if d.reason == SCALE_UP:
            assert d.desired > current
            assert floor <= d.desired <= policy.max_replicas
        elif d.reason == SCALE_DOWN:
            assert d.desired < current
            assert d.desired >= min(current, d.recommended)
            # never below the pods the running chunks occupy (unless that exceeds max)
            assert d.desired >= min(policy.max_replicas, math.ceil(busy / policy.worker_calls))
            assert d.desired >= floor
        else:
            assert d.desired == current
        current = d.desired


def _pod(name: str, cost: str | None = None, phase: str = "Running", deleting: bool = False) -> Any:
    from types import SimpleNamespace

    annotations = {"controller.kubernetes.io/pod-deletion-cost": cost} if cost is not None else {}
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, annotations=annotations, deletion_timestamp="now" if deleting else None),
        status=SimpleNamespace(phase=phase),
    )


def test_scale_down_annotates_running_pods_where_the_cost_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.client.exceptions import ApiException

    from humanizer.config import Settings
    from humanizer_operator import k8s
    from humanizer_operator.handlers.autoscale import Autoscaler
    from humanizer_operator.settings import OperatorSettings

    pods = [_pod("w-idle"), _pod("w-busy", cost="0"), _pod("w-same", cost="0"), _pod("w-pending", phase="Pending"),
            _pod("w-going", deleting=True)]
    patched: list[tuple[str, dict[str, str | None]]] = []
    monkeypatch.setattr(k8s, "list_pods", lambda ns, labels: pods)
    monkeypatch.setattr(k8s, "annotate_pod", lambda ns, name, ann: patched.append((name, dict(ann))) or True)
    scaler = Autoscaler(OperatorSettings(worker_namespace="ns"), Settings())
    asked: list[list[str]] = []

    def in_flight(names: list[str]) -> dict[str, int | None]:
        asked.append(names)
        return {"w-idle": 0, "w-busy": 12, "w-same": 0}

    monkeypatch.setattr(scaler, "pod_in_flight", in_flight)
    costs = scaler.steer_scale_down("ns", {"app": "worker"})
    assert asked == [["w-idle", "w-busy", "w-same"]]  # Running pods only: the ReplicaSet removes the others first
    assert costs == {"w-idle": 0, "w-busy": 12, "w-same": 0}
    key = "controller.kubernetes.io/pod-deletion-cost"
    assert patched == [("w-idle", {key: "0"}), ("w-busy", {key: "12"})]  # w-same already carries its cost

    # once the scale-down is done the costs are removed again
    pods[:] = [_pod("w-busy", cost="12")]
    patched.clear()
    scaler.clear_costs("ns", {"app": "worker"})
    assert patched == [("w-busy", {key: None})] and scaler.last_costs == {}

    # without RBAC on pods the scale-down is not blocked: nothing is steered, with a warning
    def forbidden(*_: Any) -> list[Any]:
        raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(k8s, "list_pods", forbidden)
    assert scaler.steer_scale_down("ns", {"app": "worker"}) == {}
    # and no worker answering: nothing is guessed
    monkeypatch.setattr(k8s, "list_pods", lambda ns, labels: [_pod("a"), _pod("b")])
    monkeypatch.setattr(scaler, "pod_in_flight", lambda names: dict.fromkeys(names))
    assert scaler.steer_scale_down("ns", {"app": "worker"}) == {}
