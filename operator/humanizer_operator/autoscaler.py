"""The worker autoscaler's decision, as a pure function (no Redis, no Kubernetes, no clock).

Inputs are one observation (work queued, work in flight, current replicas, time) and the policy;
the output is the replica count to set and why. The rules, in order:

1. ``raw = ceil((queued + in_flight) / target_per_worker)``;
2. capped by what the provider rate limit can use: with ``rate_limit_rpm`` requests per minute and
   chunks taking ``chunk_seconds``, at most ``rpm * chunk_seconds / 60`` chunks run at once, which
   ``ceil(that / concurrency)`` pods can hold (more pods would only wait in the rate limiter);
3. never below what is in flight: ``ceil(in_flight / concurrency)`` pods hold the running chunks;
4. clamped to ``[min, max]``; the minimum is 0 only when ``scale_to_zero`` is on and nothing is
   queued or in flight (otherwise at least 1);
5. scale up at once; scale down only to the highest recommendation of the last
   ``scale_down_stabilization_seconds`` (Kubernetes HPA's stabilisation window), so a short lull
   does not shrink the pool;
6. Redis unreadable: hold the current size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Decision reasons (the ``reason`` label of humanizer_autoscaler_decisions_total): a closed set.
SCALE_UP = "scale_up"
SCALE_DOWN = "scale_down"
STEADY = "steady"
STABILIZING = "stabilizing"
REDIS_UNAVAILABLE = "redis_unavailable"
PAUSED = "paused"
NO_DEPLOYMENT = "no_deployment"
REASONS = (SCALE_UP, SCALE_DOWN, STEADY, STABILIZING, REDIS_UNAVAILABLE, PAUSED, NO_DEPLOYMENT)


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int = 1
    max_replicas: int = 10
    target_per_worker: int = 64  # chunks per pod, queued + in flight
    concurrency: int = 64  # chunks a pod has in flight (Settings.calls_per_worker)
    scale_down_stabilization_seconds: float = 300.0
    scale_to_zero: bool = False
    rate_limit_rpm: float = 0.0  # 0: no provider rate limit configured

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1 or self.min_replicas > self.max_replicas:
            raise ValueError(f"need 0 <= min ({self.min_replicas}) <= max ({self.max_replicas}) and max >= 1")
        if self.target_per_worker < 1 or self.concurrency < 1:
            raise ValueError("target_per_worker and concurrency must be at least 1")
        if self.scale_down_stabilization_seconds < 0 or self.rate_limit_rpm < 0:
            raise ValueError("stabilisation window and rate limit must not be negative")


@dataclass(frozen=True)
class Observation:
    queued: int | None  # None: Redis could not be read
    in_flight: int | None
    current_replicas: int
    now: float  # monotonic seconds
    chunk_seconds: float = 2.0  # recent mean time of one chunk (for the rate-limit cap)


@dataclass
class ScalerState:
    """Recommendations of the stabilisation window: (time, replicas), oldest first."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    seeded: bool = False  # the first tick counts the current size as a recommendation


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    recommended: int  # this tick's recommendation before the stabilisation window
    detail: str = ""

    @property
    def changes(self) -> bool:
        return self.reason in (SCALE_UP, SCALE_DOWN)


def rate_limit_cap(policy: ScalingPolicy, chunk_seconds: float) -> int | None:
    """Most pods the provider rate limit can keep busy; None when no limit is configured."""
    if policy.rate_limit_rpm <= 0:
        return None
    concurrent = policy.rate_limit_rpm * max(chunk_seconds, 0.05) / 60.0
    return max(1, math.ceil(concurrent / policy.concurrency))


def recommend(policy: ScalingPolicy, queued: int, in_flight: int, chunk_seconds: float = 2.0) -> int:
    """Rules 1-4: the replica count this observation alone asks for."""
    queued, in_flight = max(0, queued), max(0, in_flight)
    work = queued + in_flight
    want = math.ceil(work / policy.target_per_worker)
    cap = rate_limit_cap(policy, chunk_seconds)
    if cap is not None:
        want = min(want, cap)
    want = max(want, math.ceil(in_flight / policy.concurrency))
    floor = 0 if (policy.scale_to_zero and work == 0) else max(1, policy.min_replicas)
    return max(floor, min(policy.max_replicas, want))


def decide(policy: ScalingPolicy, obs: Observation, state: ScalerState) -> Decision:
    """One autoscaler tick. Updates ``state`` (the window) in place and returns the decision."""
    current = max(0, obs.current_replicas)
    if obs.queued is None or obs.in_flight is None:
        return Decision(current, REDIS_UNAVAILABLE, current, "queue depth unreadable: holding the current size")
    rec = recommend(policy, obs.queued, obs.in_flight, obs.chunk_seconds)
    if not state.seeded:
        # a restarted operator knows no history: treat the size it finds as recent, so a restart
        # never shrinks the pool before a full window has passed
        state.recommendations.append((obs.now, current))
        state.seeded = True
    horizon = obs.now - policy.scale_down_stabilization_seconds
    state.recommendations = [(t, r) for t, r in state.recommendations if t > horizon]
    state.recommendations.append((obs.now, rec))
    detail = f"queued={obs.queued} in_flight={obs.in_flight} recommended={rec}"
    if rec > current:
        return Decision(rec, SCALE_UP, rec, detail)
    # scale down at most to the highest recommendation still inside the window
    stable = max(r for _, r in state.recommendations)
    desired = min(current, stable)
    if desired < current:
        return Decision(desired, SCALE_DOWN, rec, detail)
    if rec < current:
        return Decision(current, STABILIZING, rec, detail + f" (window holds {stable})")
    return Decision(current, STEADY, rec, detail)
