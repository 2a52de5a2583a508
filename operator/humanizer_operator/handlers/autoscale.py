"""The worker autoscaler loop: queue depth + in-flight work from Redis → the worker Deployment's scale.

It runs as a background task of the operator (started by a kopf startup handler, stopped by a
cleanup handler), not as a kopf timer on the Deployment: a kopf timer would put kopf's finalizer on
the worker Deployment (blocking its deletion when the operator is gone first, e.g. on
``helm uninstall``) and would make kopf watch every Deployment of every watched namespace.

Several operator replicas: one autoscaler is active at a time, elected with a Redis lease
(``SET NX PX`` renewed every tick) on the same Redis it reads, so no extra RBAC is needed.

Scale-down victims: before lowering ``.spec.replicas`` the loop sets
``controller.kubernetes.io/pod-deletion-cost`` on every worker pod to the chunks that pod is running
(``autoscaler.deletion_costs``), and the ReplicaSet removes the cheapest pods first: idle ones, then the
least busy; once the ReplicaSet has removed its pods the costs are removed again. Each pod's running
chunks come from Celery's ``inspect active`` broadcast (see ``Autoscaler.pod_in_flight`` for why that
source). It needs ``list`` and ``patch`` on ``pods`` in the worker namespace; without them the
scale-down goes ahead unsteered, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import redis
from kubernetes.client.exceptions import ApiException

from humanizer.config import Settings, get_settings
from humanizer.jobs.scheduler import Scheduler
from humanizer.jobs.store import JobStore
from humanizer.monitoring.queues import held_by_age, queue_depths
from humanizer_operator import k8s, metrics, service
from humanizer_operator.autoscaler import (
    NO_DEPLOYMENT,
    PAUSED,
    POD_DELETION_COST,
    REDIS_UNAVAILABLE,
    SCALE_DOWN,
    STEADY,
    BrokerCounts,
    Decision,
    Observation,
    ScalerState,
    ScalingPolicy,
    chunks_by_pod,
    decide,
    deletion_costs,
    tokens_per_chunk_estimate,
    work_in_chunks,
)
from humanizer_operator.background import stop_loop
from humanizer_operator.settings import OperatorSettings, get_operator_settings

log = logging.getLogger("humanizer_operator.autoscaler")

_LEASE = """
local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
HOLD_EVENT_EVERY = 60.0  # seconds between repeated "Redis unreadable" Events


MAX_JOBS_READ = 5000  # more unfinished jobs than this: their chunks are not read (the bound alone is used)


def policy_from(op: OperatorSettings, hz: Settings) -> ScalingPolicy:
    return ScalingPolicy(
        min_replicas=op.min_replicas,
        max_replicas=op.max_replicas,
        target_per_worker=op.target_per_worker,
        worker_calls=hz.calls_per_worker,  # chunks one pod handles at once
        scale_down_stabilization_seconds=op.scale_down_stabilization_seconds,
        scale_to_zero=op.scale_to_zero,
        rate_limit_rpm=hz.rate_limit_rpm,
        rate_limit_tpm=hz.rate_limit_tpm,
        rate_limit_headroom=hz.rate_limit_headroom,
        tokens_per_chunk=op.tokens_per_chunk or float(2 * hz.chunk_max_tokens + 200),
    )


@dataclass
class Workload:
    """One reading of the work, in chunks (see ``autoscaler.Observation`` for the units)."""

    queued: int
    in_flight: int
    chunk_seconds: float = 2.0
    tokens_per_chunk: float | None = None
    limiter_work: dict[str, int] = field(default_factory=dict)
    expired: int = 0  # held messages past the visibility timeout (counted in ``queued``)


@dataclass
class Tick:
    decision: Decision
    current: int
    patched: bool


class Autoscaler:
    """One autoscaler: ``tick()`` observes, decides, and patches the Deployment's scale."""

    def __init__(self, op: OperatorSettings, hz: Settings) -> None:
        self.op, self.hz = op, hz
        self.policy = policy_from(op, hz)
        self.state = ScalerState()
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_key = f"{hz.key_prefix}:autoscaler:leader:{op.worker_namespace}/{op.worker_deployment}"
        self.lease_ms = int(max(5.0, 3 * op.interval_seconds) * 1000)
        self._last: tuple[str, int] | None = None
        self._last_hold_event = 0.0
        self._deployment: dict[str, Any] | None = None
        self._readings: dict[str, tuple[int, int]] = {}  # per unfinished job: (chunks ended, tokens used)
        self.tokens_per_chunk: float | None = None  # measured; None until chunks have ended between two ticks
        self._celery: Any = None
        self._rbac_warned = False
        self.last_costs: dict[str, int] = {}  # the pod-deletion costs of the last scale-down

    # ---- observation --------------------------------------------------------------------------
    def _redis(self) -> redis.Redis:
        return service.fast_redis(self.hz)

    def _leader(self, client: redis.Redis) -> bool:
        return bool(client.eval(_LEASE, 1, self.lease_key, self.identity, self.lease_ms))

    def _work(self, client: redis.Redis) -> Workload:
        """Work queued and in flight, in chunks; a merge or verify message counts as one.

        A chunk message is one batch task of up to ``HUMANIZER_BATCH_SIZE`` chunks, so messages x batch size
        is an upper bound: a job's last batch is partial, and many small jobs (one-paragraph documents) would
        each count as a whole batch, 16 times their size. The unfinished jobs' chunks without an output
        cap it (``autoscaler.work_in_chunks``); with more unfinished jobs than ``MAX_JOBS_READ``, the bound
        alone is used. Held messages older than ``CELERY_VISIBILITY_TIMEOUT`` are a dead worker's, about
        to be restored to their queue: they count as queued, not in flight. The same read of the jobs
        gives the outstanding chunks per rate limiter and the tokens one chunk uses."""
        broker, control = self.hz.broker_key_prefix, self.hz.control_queue
        queues = self.hz.resolve_queues(self.op.queues)  # logical or full names -> this prefix's queues
        depths = queue_depths(client, queues, key_prefix=broker)
        live, expired = held_by_age(client, self.hz.celery_visibility_timeout, key_prefix=broker)
        outstanding, limiter_work, readings = self._jobs(client)
        counts = BrokerCounts(
            queued=sum(n for q, n in depths.items() if q != control),
            held=sum(n for q, n in live.items() if q != control),
            expired=sum(n for q, n in expired.items() if q != control),
            control_queued=depths.get(control, 0),
            control_held=live.get(control, 0),
            control_expired=expired.get(control, 0),
            scheduled=Scheduler(client, self.hz.key_prefix).held_chunks(),
        )
        queued, in_flight = work_in_chunks(counts, self.hz.batch_size, outstanding)
        self.tokens_per_chunk = tokens_per_chunk_estimate(self._readings, readings, self.tokens_per_chunk)
        self._readings = readings
        raw = client.get(f"{self.hz.key_prefix}:stats:chunk_seconds")
        return Workload(queued, in_flight, float(str(raw)) if raw else 2.0, self.tokens_per_chunk, limiter_work,
                        counts.expired + counts.control_expired)

    def _jobs(self, client: redis.Redis) -> tuple[int | None, dict[str, int], dict[str, tuple[int, int]]]:
        """The unfinished jobs, one pipelined read: their chunks with neither an output nor a dead letter
        (None when more than ``MAX_JOBS_READ`` jobs are unfinished), those chunks per rate limiter (named
        ``provider:model`` as the workers name theirs), and per job ``(chunks ended, tokens used)``."""
        store = JobStore(client, prefix=self.hz.key_prefix)
        if int(client.zcard(store.active_key)) > MAX_JOBS_READ:
            return None, {}, {}
        ids = [str(j) for j in client.zrange(store.active_key, 0, -1)]
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(store.key(job_id), "total", "done", "failed", "tokens_in", "tokens_out", "provider", "model")
        left = 0
        per_limiter: dict[str, int] = {}
        readings: dict[str, tuple[int, int]] = {}
        for job_id, row in zip(ids, pipe.execute(), strict=True):
            total, done, failed, tokens_in, tokens_out, provider, model = row
            if total is None:  # a job deleted meanwhile
                continue
            ended = int(done or 0) + int(failed or 0)
            remaining = max(0, int(total) - ended)
            left += remaining
            limiter = f"{provider or self.hz.provider}:{model or self.hz.openai_model}"
            per_limiter[limiter] = per_limiter.get(limiter, 0) + remaining
            readings[job_id] = (ended, int(tokens_in or 0) + int(tokens_out or 0))
        return left, per_limiter, readings

    # ---- one tick -----------------------------------------------------------------------------
    def tick(self) -> Tick | None:
        """Returns None when another operator replica holds the autoscaler lease."""
        work: Workload | None = None
        try:
            client = self._redis()
            if not self._leader(client):
                return None
            work = self._work(client)
            error = ""
        except redis.RedisError as exc:
            error = f"{type(exc).__name__}: {exc}"
        name, namespace = self.op.worker_deployment, self.op.worker_namespace
        try:
            dep = k8s.apps().read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            metrics.READY_REPLICAS.set(0)
            return self._record(Decision(0, NO_DEPLOYMENT, 0, f"Deployment {namespace}/{name} not found"), 0, False)
        self._deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "uid": dep.metadata.uid},
        }
        current = int(dep.spec.replicas if dep.spec.replicas is not None else 1)
        metrics.READY_REPLICAS.set(int((dep.status.ready_replicas if dep.status is not None else 0) or 0))
        if _paused(dep):
            return self._record(Decision(current, PAUSED, current, f"annotation {k8s.PAUSE_ANNOTATION}=true"),
                                current, False)
        if work is not None:
            metrics.QUEUED.set(work.queued)
            metrics.IN_FLIGHT.set(work.in_flight)
            obs = Observation(work.queued, work.in_flight, current, time.monotonic(), work.chunk_seconds,
                              work.tokens_per_chunk, work.limiter_work)
        else:
            obs = Observation(None, None, current, time.monotonic())
        decision = decide(self.policy, obs, self.state)
        if decision.reason == REDIS_UNAVAILABLE:
            decision = Decision(decision.desired, decision.reason, decision.recommended, f"{decision.detail}: {error}")
            self._hold_event(decision.detail)
        if work is not None and work.expired:
            decision = Decision(decision.desired, decision.reason, decision.recommended,
                                f"{decision.detail} (expired held messages={work.expired}, counted as queued)")
        patched = False
        selector = dict(dep.spec.selector.match_labels or {})
        if decision.changes:
            if decision.reason == SCALE_DOWN and decision.desired > 0 and self.op.pod_deletion_cost:
                self.steer_scale_down(namespace, selector)
            now = self._patch_scale(name, namespace, current, decision)
            if now is not None:
                replicas = int(now.spec.replicas if now.spec.replicas is not None else 1)
                reason = PAUSED if _paused(now) else STEADY
                detail = f"the Deployment changed while deciding (replicas {current} -> {replicas}): next tick decides"
                return self._record(Decision(replicas, reason, decision.recommended, detail), replicas, False)
            patched = True
        elif self.last_costs and dep.status is not None and dep.status.replicas == current:
            self.clear_costs(namespace, selector)  # the ReplicaSet has removed its pods: the costs are spent
        return self._record(decision, current, patched)

    def _patch_scale(self, name: str, namespace: str, current: int, decision: Decision) -> Any | None:
        """Set the Deployment's replicas to the decision unless someone else moved first. Returns None when
        it patched, else the Deployment as it is now.

        Steering a scale-down asks the workers, which takes a while, and a pause annotation or a manual
        ``kubectl scale`` made meanwhile must win instead of being undone. So the Deployment is read again,
        and the scale is patched with that read's resourceVersion as a precondition: a change between the
        read and the patch (milliseconds) makes the API server answer 409, and the next tick decides
        again from what is there then."""
        now = k8s.apps().read_namespaced_deployment(name, namespace)
        replicas = int(now.spec.replicas if now.spec.replicas is not None else 1)
        if _paused(now) or replicas != current:
            return now
        body = {"metadata": {"resourceVersion": now.metadata.resource_version},
                "spec": {"replicas": decision.desired}}
        try:
            k8s.apps().patch_namespaced_deployment_scale(name, namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            return k8s.apps().read_namespaced_deployment(name, namespace)
        return None

    # ---- scale-down victims -------------------------------------------------------------------
    def pod_in_flight(self, pods: list[str]) -> dict[str, int | None]:
        """Chunks each worker pod is running, from Celery's ``inspect active`` (None: no answer).

        Why this source: every worker already answers it (remote control is on; it rides on the Redis
        the operator reads anyway, so no network path to the pods, no NetworkPolicy and no RBAC), and it
        names each worker by its node name ``celery@<hostname>``, the pod's name. The alternatives need
        more: the unacked hash does not say which worker took a message (kombu's delivery tags are
        random), the pods' ``humanizer_tasks_in_flight`` gauge needs the operator to reach every pod's
        metrics port, and a per-worker key in Redis needs new worker code kept fresh. It is asked once per
        scale-down (after a stabilisation window), never per tick, and bounded by
        ``HUMANIZER_AUTOSCALE_INSPECT_TIMEOUT_SECONDS``. ``active`` is what matters: a warm shutdown waits
        for running tasks, while messages a worker only reserved go back to the queue."""
        if self._celery is None:
            from humanizer.monitoring.service import monitor_celery_app

            self._celery = monitor_celery_app(self.hz)
        replies = self._celery.control.inspect(timeout=self.op.inspect_timeout_seconds).active() or {}
        return chunks_by_pod(replies, pods)

    def steer_scale_down(self, namespace: str, match_labels: Mapping[str, str]) -> dict[str, int]:
        """Set ``controller.kubernetes.io/pod-deletion-cost`` on the worker pods from their running chunks
        (only where it changes), so that the ReplicaSet removes idle pods first. Returns the costs set;
        ``{}`` when nothing could be steered (the scale-down goes ahead either way)."""
        try:
            pods = [p for p in k8s.list_pods(namespace, match_labels)
                    if p.metadata.deletion_timestamp is None and p.status is not None and p.status.phase == "Running"]
        except ApiException as exc:
            self._rbac_warning(exc, "list")
            return {}
        if len(pods) < 2:
            return {}
        try:
            in_flight = self.pod_in_flight([p.metadata.name for p in pods])
        except Exception as exc:  # the broker or a reply: never fatal to the scale-down
            log.warning("scale-down: cannot ask the workers what they run (%s: %s); the ReplicaSet chooses",
                        type(exc).__name__, exc)
            return {}
        if all(n is None for n in in_flight.values()):
            log.warning("scale-down: no worker pod answered 'inspect active'; the ReplicaSet chooses")
            return {}
        costs = deletion_costs(in_flight)
        self.last_costs = costs  # set before patching: a partial patch is cleared all the same
        for pod in pods:
            value = str(costs[pod.metadata.name])
            if (pod.metadata.annotations or {}).get(POD_DELETION_COST) == value:
                continue
            try:
                k8s.annotate_pod(namespace, pod.metadata.name, {POD_DELETION_COST: value})
            except ApiException as exc:
                self._rbac_warning(exc, "patch")
                return {}
        log.info("scale-down: %s per pod (running chunks; unanswered: highest): %s", POD_DELETION_COST,
                 " ".join(f"{p}={c}" for p, c in sorted(costs.items(), key=lambda kv: (kv[1], kv[0]))))
        return costs

    def clear_costs(self, namespace: str, match_labels: Mapping[str, str]) -> None:
        """Remove the deletion costs once the scale-down they steered is done: they describe that moment
        only, and left in place they would steer a later scale-down by someone else (a manual one while
        autoscaling is paused) by stale figures."""
        self.last_costs = {}
        try:
            for pod in k8s.list_pods(namespace, match_labels):
                if pod.metadata.deletion_timestamp is None and POD_DELETION_COST in (pod.metadata.annotations or {}):
                    k8s.annotate_pod(namespace, pod.metadata.name, {POD_DELETION_COST: None})
        except ApiException as exc:
            self._rbac_warning(exc, "clear the deletion cost of")

    def _rbac_warning(self, exc: ApiException, verb: str) -> None:
        level = logging.WARNING if not self._rbac_warned else logging.DEBUG
        self._rbac_warned = True
        hint = "; the operator needs list and patch on pods" if exc.status == 403 else ""
        log.log(level, "scale-down: cannot %s pods in %s (%s %s%s): the ReplicaSet chooses which pods go",
                verb, self.op.worker_namespace, exc.status, exc.reason, hint)

    def _record(self, decision: Decision, current: int, patched: bool) -> Tick:
        metrics.DECISIONS.labels(decision.reason).inc()
        metrics.DESIRED_REPLICAS.set(decision.desired)
        metrics.CURRENT_REPLICAS.set(decision.desired if patched else current)
        key = (decision.reason, decision.desired)
        level = logging.INFO if (patched or key != self._last) else logging.DEBUG
        log.log(level, "autoscaler decision: %s %d -> %d (%s)", decision.reason, current, decision.desired,
                decision.detail)
        self._last = key
        return Tick(decision, current, patched)

    def _hold_event(self, message: str) -> None:
        now = time.monotonic()
        if self._deployment is None or now - self._last_hold_event < HOLD_EVENT_EVERY:
            return
        self._last_hold_event = now
        try:
            k8s.post_event(self._deployment, "Warning", "AutoscalerHold", message)
        except ApiException as exc:
            log.warning("cannot post the AutoscalerHold event: %s", exc.reason)


def _paused(dep: Any) -> bool:
    """The worker Deployment carries the pause annotation (manual control)."""
    return (dep.metadata.annotations or {}).get(k8s.PAUSE_ANNOTATION, "").lower() == "true"


async def run(scaler: Autoscaler, stop: asyncio.Event) -> None:
    """Tick every ``interval_seconds`` until ``stop`` is set; errors are logged, never fatal."""
    interval = scaler.op.interval_seconds
    while not stop.is_set():
        started = time.monotonic()
        try:
            await asyncio.to_thread(scaler.tick)
        except Exception:
            log.exception("autoscaler tick failed")
        remaining = interval - (time.monotonic() - started)
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)


@kopf.on.startup()
async def autoscaler_start(memo: kopf.Memo, logger: Any, **_: Any) -> None:
    op = get_operator_settings()
    if not op.autoscale_enabled:
        logger.info("worker autoscaling is off (HUMANIZER_AUTOSCALE_ENABLED=false)")
        return
    scaler = Autoscaler(op, get_settings())
    memo.autoscaler_stop = asyncio.Event()
    memo.autoscaler_task = asyncio.create_task(run(scaler, memo.autoscaler_stop), name="humanizer-autoscaler")
    logger.info(
        "autoscaling Deployment %s/%s every %.1fs: %s", op.worker_namespace, op.worker_deployment,
        op.interval_seconds, scaler.policy,
    )


@kopf.on.cleanup()
async def autoscaler_stop(memo: kopf.Memo, **_: Any) -> None:
    await stop_loop(memo, "autoscaler")
