"""The autoscaler's pure decision: clamp, stabilisation window, in-flight floor, rate-limit cap,
scale to zero, Redis-unreadable hold."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humanizer_operator.autoscaler import (
    REDIS_UNAVAILABLE,
    SCALE_DOWN,
    SCALE_UP,
    STABILIZING,
    STEADY,
    Observation,
    ScalerState,
    ScalingPolicy,
    decide,
    rate_limit_cap,
    recommend,
)

pytestmark = pytest.mark.unit

POLICY = ScalingPolicy(min_replicas=1, max_replicas=10, target_per_worker=8, concurrency=4,
                       scale_down_stabilization_seconds=60)


def tick(policy: ScalingPolicy, state: ScalerState, queued: int | None, in_flight: int | None, current: int,
         now: float, chunk_seconds: float = 2.0) -> tuple[int, str]:
    d = decide(policy, Observation(queued, in_flight, current, now, chunk_seconds), state)
    return d.desired, d.reason


def test_recommendation_is_work_over_target_clamped() -> None:
    assert recommend(POLICY, 0, 0) == 1
    assert recommend(POLICY, 8, 0) == 1
    assert recommend(POLICY, 9, 0) == 2
    assert recommend(POLICY, 40, 8) == 6
    assert recommend(POLICY, 400, 0) == 10  # max


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


def test_never_below_what_is_in_flight() -> None:
    policy = ScalingPolicy(min_replicas=1, max_replicas=10, target_per_worker=100, concurrency=4,
                           scale_down_stabilization_seconds=0)
    assert recommend(policy, 0, 20) == 5  # 20 running chunks need 5 pods of 4 slots
    state = ScalerState(seeded=True)
    assert tick(policy, state, 0, 20, 8, 0.0) == (5, SCALE_DOWN)


def test_rate_limit_caps_the_pool() -> None:
    policy = ScalingPolicy(min_replicas=1, max_replicas=50, target_per_worker=4, concurrency=4, rate_limit_rpm=120)
    # 120 rpm x 2 s per chunk = 4 chunks at once = 1 pod of 4 slots
    assert rate_limit_cap(policy, 2.0) == 1
    assert recommend(policy, 400, 0, chunk_seconds=2.0) == 1
    assert recommend(policy, 400, 0, chunk_seconds=10.0) == 5  # slower chunks: more can be in flight
    assert rate_limit_cap(POLICY, 2.0) is None


def test_scale_to_zero_is_opt_in() -> None:
    zero = ScalingPolicy(min_replicas=0, max_replicas=5, target_per_worker=8, concurrency=4,
                         scale_down_stabilization_seconds=0, scale_to_zero=True)
    assert recommend(zero, 0, 0) == 0
    assert recommend(zero, 1, 0) == 1
    assert recommend(zero, 0, 1) == 1
    no_zero = ScalingPolicy(min_replicas=0, max_replicas=5, target_per_worker=8, concurrency=4)
    assert recommend(no_zero, 0, 0) == 1  # min 0 without scale_to_zero still keeps one worker
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


policies = st.builds(
    ScalingPolicy,
    min_replicas=st.integers(0, 5),
    max_replicas=st.integers(5, 40),
    target_per_worker=st.integers(1, 50),
    concurrency=st.integers(1, 16),
    scale_down_stabilization_seconds=st.floats(0, 600),
    scale_to_zero=st.booleans(),
    rate_limit_rpm=st.sampled_from([0.0, 30.0, 600.0, 10_000.0]),
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
        if d.reason == SCALE_UP:
            assert d.desired > current
            assert floor <= d.desired <= policy.max_replicas
        elif d.reason == SCALE_DOWN:
            assert d.desired < current
            assert d.desired >= min(current, d.recommended)
            # never below the pods the running chunks occupy (unless that exceeds max)
            assert d.desired >= min(policy.max_replicas, math.ceil(in_flight / policy.concurrency))
            assert d.desired >= floor
        else:
            assert d.desired == current
        current = d.desired
