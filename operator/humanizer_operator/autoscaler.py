"""The worker autoscaler's decision, as pure functions (no Redis, no Kubernetes, no clock).

Every quantity is counted in **chunks** (one provider rewrite each; a merge or verify task counts as
one), and a worker pod's size in chunks it handles at once: its provider call slots,
``HUMANIZER_WORKER_CALLS`` (``Settings.calls_per_worker``: at most ``CELERY_WORKER_CONCURRENCY`` x
``HUMANIZER_BATCH_SIZE``, the chunks of the batch tasks it holds).

Inputs are one observation (chunks queued, chunks in flight, current replicas, time, the rate-limit
inputs) and the policy; the output is the replica count to set and why. The rules, in order:

1. ``running = min(in_flight, current x worker_calls)``: a pod holds more chunks than it runs (the
   batch tasks it holds carry about twice its call slots, so the next batch is ready when a slot
   frees up), and what a pod holds only that pod can run. Held work therefore never asks for pods
   beyond the current ones (4 saturated pods and an empty queue stay 4); it only keeps them;
2. ``raw = ceil((queued + min(running, current x target_per_worker)) / target_per_worker)``: running
   work fills the pods it runs on and never more (with a target below the call slots a pod may run more
   than its target, which no other pod could take over);
3. capped by what the provider rate limits can use: each (provider, model) has its own limiter
   (``ratelimit.RateLimiter`` named ``provider:model``), which paces calls at ``1 - headroom`` of
   ``HUMANIZER_RATE_LIMIT_RPM`` and of ``HUMANIZER_RATE_LIMIT_TPM``. One limiter lets
   ``min(rpm, tpm / tokens_per_chunk) x (1 - headroom)`` chunks start per minute, so
   ``that x chunk_seconds / 60`` run at once (Little's law), and no more than its outstanding chunks;
   the sum over the limiters with work is what all pods together can run, which
   ``ceil(sum / min(worker_calls, target_per_worker))`` pods hold (more would only wait in a limiter);
4. never below what is running: ``ceil(running / worker_calls)`` pods hold the running chunks;
5. clamped to ``[min, max]``; the minimum is 0 only when ``scale_to_zero`` is on and nothing is
   queued or in flight (otherwise at least 1);
6. scale up at once; scale down only to the highest recommendation of the last
   ``scale_down_stabilization_seconds`` (Kubernetes HPA's stabilisation window), so a short lull
   does not shrink the pool;
7. Redis unreadable: hold the current size.

Scale-down victims (``deletion_costs``): before lowering ``.spec.replicas`` the loop annotates every
worker pod with ``controller.kubernetes.io/pod-deletion-cost`` = the chunks it is running, so the
ReplicaSet removes idle pods first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Decision reasons (the ``reason`` label of humanizer_autoscaler_decisions_total): a closed set.
SCALE_UP = "scale_up"
SCALE_DOWN = "scale_down"
STEADY = "steady"
STABILIZING = "stabilizing"
REDIS_UNAVAILABLE = "redis_unavailable"
PAUSED = "paused"
NO_DEPLOYMENT = "no_deployment"
REASONS = (SCALE_UP, SCALE_DOWN, STEADY, STABILIZING, REDIS_UNAVAILABLE, PAUSED, NO_DEPLOYMENT)

_EPSILON = 1e-9  # float noise must not add a pod (3.0000000001 / 3 is one pod, not two)


def _ceil(value: float) -> int:
    return max(0, math.ceil(value - _EPSILON))


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int = 1
    max_replicas: int = 10
    # chunks (queued + running) one worker pod is sized for (HUMANIZER_AUTOSCALE_TARGET_PER_WORKER)
    target_per_worker: int = 64
    # chunks one worker pod handles at once: its provider call slots (HUMANIZER_WORKER_CALLS, at most
    # CELERY_WORKER_CONCURRENCY x HUMANIZER_BATCH_SIZE: Settings.calls_per_worker)
    worker_calls: int = 64
    scale_down_stabilization_seconds: float = 300.0
    scale_to_zero: bool = False
    # provider requests per minute, per (provider, model) (HUMANIZER_RATE_LIMIT_RPM); 0: no limit
    rate_limit_rpm: float = 0.0
    # provider tokens (prompt + reply) per minute, per (provider, model) (HUMANIZER_RATE_LIMIT_TPM); 0: no limit
    rate_limit_tpm: float = 0.0
    # the limiter paces at (1 - headroom) x the limits (HUMANIZER_RATE_LIMIT_HEADROOM)
    rate_limit_headroom: float = 0.0
    # tokens one chunk's calls use, for the TPM cap while the jobs have not measured it
    tokens_per_chunk: float = 1000.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1 or self.min_replicas > self.max_replicas:
            raise ValueError(f"need 0 <= min ({self.min_replicas}) <= max ({self.max_replicas}) and max >= 1")
        if self.target_per_worker < 1 or self.worker_calls < 1:
            raise ValueError("target_per_worker and worker_calls must be at least 1")
        if self.scale_down_stabilization_seconds < 0 or self.rate_limit_rpm < 0 or self.rate_limit_tpm < 0:
            raise ValueError("stabilisation window and rate limits must not be negative")
        if not 0 <= self.rate_limit_headroom < 1 or self.tokens_per_chunk <= 0:
            raise ValueError("rate-limit headroom must be in [0, 1) and tokens per chunk positive")


@dataclass(frozen=True)
class Observation:
    # chunks waiting for any worker: in the queues' lists, plus those of held messages whose
    # visibility timeout has passed (a dead worker's: kombu restores them to the queue). None: unreadable
    queued: int | None
    # chunks delivered to live workers and not finished (kombu's unacked hash, within the visibility
    # timeout): each held by one pod, running in one of its call slots or waiting there for one
    in_flight: int | None
    current_replicas: int
    now: float  # monotonic seconds
    chunk_seconds: float = 2.0  # recent mean seconds of one chunk (for the rate-limit cap)
    tokens_per_chunk: float | None = None  # measured tokens per chunk; None: the policy's estimate
    # outstanding chunks per rate limiter ("provider:model"); empty: unknown (one limiter, unbounded)
    limiter_work: Mapping[str, int] = field(default_factory=dict)


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


# ---- work, in chunks ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerCounts:
    """Messages as the broker holds them: chunk (batch) messages and control (merge/verify) messages."""

    queued: int = 0  # chunk messages in the queues' lists
    held: int = 0  # chunk messages in the unacked hash, delivered within the visibility timeout
    expired: int = 0  # chunk messages in the unacked hash older than the visibility timeout
    control_queued: int = 0
    control_held: int = 0
    control_expired: int = 0
    scheduled: int = 0  # chunks (not messages) the fair scheduler holds back, not yet in a queue


def work_in_chunks(counts: BrokerCounts, batch_size: int, outstanding: int | None) -> tuple[int, int]:
    """``(queued, in_flight)`` in chunks from broker message counts.

    A chunk message carries up to ``batch_size`` chunks, so messages x batch size is an upper bound; the
    unfinished jobs' chunks without an output or dead letter (``outstanding``; None: unknown) cap it.
    Held messages count first (they are certainly being worked on), then the queued ones; queued work
    includes the chunks the fair scheduler holds back (``scheduled``: its own count, exact).

    A held message older than the visibility timeout is not live work: the worker that took it is gone
    (a live one finishes or gives up within the task time limit, which is below the timeout) and kombu
    restores it to its queue. It counts as queued: it needs a worker, and only a running worker's
    consumer restores it, so it must also wake a Deployment scaled to zero. Control messages count one
    each and are never capped (a merge waiting alone must still wake a worker)."""
    per = max(1, batch_size)
    in_flight = max(0, counts.held) * per
    queued = (max(0, counts.queued) + max(0, counts.expired)) * per + max(0, counts.scheduled)
    if outstanding is not None:
        in_flight = min(in_flight, max(0, outstanding))
        queued = min(queued, max(0, outstanding) - in_flight)
    return (queued + max(0, counts.control_queued) + max(0, counts.control_expired),
            in_flight + max(0, counts.control_held))


def running(policy: ScalingPolicy, in_flight: int, current: int) -> int:
    """Chunks the current pods run at once: held chunks, at most ``worker_calls`` per pod (rule 1)."""
    return min(max(0, in_flight), max(0, current) * policy.worker_calls)


def tokens_per_chunk_estimate(
    before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]], estimate: float | None,
    weight: float = 0.2,
) -> float | None:
    """Update the moving estimate of tokens per chunk from two readings of the unfinished jobs.

    Each reading maps a job to ``(chunks ended, tokens used)`` (``done + failed``, ``tokens_in +
    tokens_out``). Only jobs in both readings count, so chunks that needed no model (stored when the
    job was created) and jobs seen for the first time do not dilute the figure. Returns the estimate
    unchanged when no chunk ended in between."""
    chunks = tokens = 0
    for job, (ended, used) in after.items():
        if job in before:
            chunks += max(0, ended - before[job][0])
            tokens += max(0, used - before[job][1])
    if chunks <= 0 or tokens <= 0:
        return estimate
    sample = tokens / chunks
    return sample if estimate is None else estimate + weight * (sample - estimate)


# ---- rate limits ----------------------------------------------------------------------------------
def limiter_concurrency(
    policy: ScalingPolicy, chunk_seconds: float, tokens_per_chunk: float | None = None
) -> float | None:
    """Chunks one rate limiter (one provider and model) lets run at once; None when no limit is set.

    The limiter paces at ``1 - headroom`` of each limit; a chunk is one request and ``tokens_per_chunk``
    tokens, so RPM allows ``rpm x keep`` chunks a minute and TPM ``tpm x keep / tokens_per_chunk``: the
    smaller wins. Chunks of ``chunk_seconds`` each: ``per minute x chunk_seconds / 60`` at once."""
    keep = 1.0 - policy.rate_limit_headroom
    per_minute: list[float] = []
    if policy.rate_limit_rpm > 0:
        per_minute.append(policy.rate_limit_rpm * keep)
    if policy.rate_limit_tpm > 0:
        tokens = tokens_per_chunk if tokens_per_chunk and tokens_per_chunk > 0 else policy.tokens_per_chunk
        per_minute.append(policy.rate_limit_tpm * keep / tokens)
    if not per_minute:
        return None
    return min(per_minute) * max(chunk_seconds, 0.05) / 60.0


def rate_limit_cap(
    policy: ScalingPolicy, chunk_seconds: float, tokens_per_chunk: float | None = None,
    limiter_work: Mapping[str, int] | None = None,
) -> int | None:
    """Most pods the provider rate limits can keep busy (rule 3); None when no limit is configured.

    ``limiter_work``: outstanding chunks per limiter. Each limiter with work contributes what it lets run
    at once, but no more than its work; empty or None: one limiter, its work unknown."""
    per_limiter = limiter_concurrency(policy, chunk_seconds, tokens_per_chunk)
    if per_limiter is None:
        return None
    usable = sum(min(per_limiter, float(n)) for n in limiter_work.values() if n > 0) if limiter_work else per_limiter
    return max(1, _ceil(usable / min(policy.worker_calls, policy.target_per_worker)))


# ---- the decision ---------------------------------------------------------------------------------
def recommend(policy: ScalingPolicy, obs: Observation) -> int:
    """Rules 1-5: the replica count this observation alone asks for."""
    queued, held = max(0, obs.queued or 0), max(0, obs.in_flight or 0)
    current = max(0, obs.current_replicas)
    busy = running(policy, held, current)
    want = _ceil((queued + min(busy, current * policy.target_per_worker)) / policy.target_per_worker)
    cap = rate_limit_cap(policy, obs.chunk_seconds, obs.tokens_per_chunk, obs.limiter_work)
    if cap is not None:
        want = min(want, cap)
    want = max(want, _ceil(busy / policy.worker_calls))
    floor = 0 if (policy.scale_to_zero and queued + held == 0) else max(1, policy.min_replicas)
    return max(floor, min(policy.max_replicas, want))


def decide(policy: ScalingPolicy, obs: Observation, state: ScalerState) -> Decision:
    """One autoscaler tick. Updates ``state`` (the window) in place and returns the decision."""
    current = max(0, obs.current_replicas)
    if obs.queued is None or obs.in_flight is None:
        return Decision(current, REDIS_UNAVAILABLE, current, "queue depth unreadable: holding the current size")
    rec = recommend(policy, obs)
    if not state.seeded:
        # a restarted operator knows no history: treat the size it finds as recent, so a restart
        # never shrinks the pool before a full window has passed
        state.recommendations.append((obs.now, current))
        state.seeded = True
    horizon = obs.now - policy.scale_down_stabilization_seconds
    state.recommendations = [(t, r) for t, r in state.recommendations if t > horizon]
    state.recommendations.append((obs.now, rec))
    detail = (f"queued={obs.queued} in_flight={obs.in_flight} "
              f"running={running(policy, obs.in_flight, current)} recommended={rec}")
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


# ---- scale-down victims ---------------------------------------------------------------------------
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
MAX_DELETION_COST = 2**31 - 1  # the annotation is an int32


def pod_hostname(pod_name: str) -> str:
    """The hostname Kubernetes gives a pod without ``spec.hostname``: its name, cut to 63 characters
    (and no trailing '-' or '.'), which is what ``celery@%h`` names its worker."""
    return pod_name[:63].rstrip("-.")


def task_chunks(task: Mapping[str, Any]) -> int:
    """Chunks one task of a worker's ``inspect active`` reply carries: a batch's indices, else 1."""
    args = task.get("args")
    if task.get("name") == "humanizer.humanize_batch" and isinstance(args, list | tuple) and len(args) > 1:
        indices = args[1]
        if isinstance(indices, list | tuple):
            return len(indices)
    return 1


def chunks_by_pod(replies: Mapping[str, Any], pods: Iterable[str]) -> dict[str, int | None]:
    """Each pod's running chunks from Celery ``inspect active`` replies (``{node name: [task, ...]}``);
    None for a pod whose worker did not answer. Node names are ``name@host``; a pod's host is
    ``pod_hostname(pod)``."""
    by_host: dict[str, int] = {}
    for node, tasks in (replies or {}).items():
        host = str(node).split("@", 1)[-1]
        by_host[host] = by_host.get(host, 0) + sum(
            task_chunks(t) for t in (tasks if isinstance(tasks, list) else []) if isinstance(t, Mapping)
        )
    return {pod: by_host.get(pod_hostname(pod)) for pod in pods}


def deletion_costs(in_flight_by_pod: Mapping[str, int | None]) -> dict[str, int]:
    """``controller.kubernetes.io/pod-deletion-cost`` per pod: the chunks it is running, so an idle pod
    costs 0 and the ReplicaSet removes it first, then the least busy. A pod whose count is unknown (its
    worker did not answer) costs more than every known one: it may be busy, and is not guessed idle."""
    known = [max(0, n) for n in in_flight_by_pod.values() if n is not None]
    unknown = min(MAX_DELETION_COST, max(known, default=0) + 1)
    return {
        pod: unknown if n is None else min(MAX_DELETION_COST, max(0, n)) for pod, n in in_flight_by_pod.items()
    }
