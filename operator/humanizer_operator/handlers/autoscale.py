"""The worker autoscaler loop: queue depth + in-flight work from Redis → the worker Deployment's scale.

It runs as a background task of the operator (started by a kopf startup handler, stopped by a
cleanup handler), not as a kopf timer on the Deployment: a kopf timer would put kopf's finalizer on
the worker Deployment (blocking its deletion when the operator is gone first, e.g. on
``helm uninstall``) and would make kopf watch every Deployment of every watched namespace.

Several operator replicas: one autoscaler is active at a time, elected with a Redis lease
(``SET NX PX`` renewed every tick) on the same Redis it reads, so no extra RBAC is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import kopf
import redis
from kubernetes.client.exceptions import ApiException

from humanizer.config import Settings, get_settings
from humanizer.jobs.store import JobStore
from humanizer.monitoring.queues import queue_depths, unacked_by_queue
from humanizer.worker.celery_app import CONTROL_QUEUE
from humanizer_operator import k8s, metrics, service
from humanizer_operator.autoscaler import (
    NO_DEPLOYMENT,
    PAUSED,
    REDIS_UNAVAILABLE,
    Decision,
    Observation,
    ScalerState,
    ScalingPolicy,
    decide,
)
from humanizer_operator.settings import OperatorSettings, get_operator_settings

log = logging.getLogger("humanizer_operator.autoscaler")

_LEASE = """
local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
HOLD_EVENT_EVERY = 60.0  # seconds between repeated "Redis unreadable" Events


def policy_from(op: OperatorSettings, hz: Settings) -> ScalingPolicy:
    return ScalingPolicy(
        min_replicas=op.min_replicas,
        max_replicas=op.max_replicas,
        target_per_worker=op.target_per_worker,
        concurrency=hz.calls_per_worker,  # chunks in flight per pod
        scale_down_stabilization_seconds=op.scale_down_stabilization_seconds,
        scale_to_zero=op.scale_to_zero,
        rate_limit_rpm=hz.rate_limit_rpm,
    )


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

    # ---- observation --------------------------------------------------------------------------
    def _redis(self) -> redis.Redis:
        return service.fast_redis(self.hz.redis_dsn)

    def _leader(self, client: redis.Redis) -> bool:
        return bool(client.eval(_LEASE, 1, self.lease_key, self.identity, self.lease_ms))

    def _work(self, client: redis.Redis) -> tuple[int, int, float]:
        """Work queued and in flight, in chunks; a merge or verify message counts as one.

        A chunk message is one batch task of up to ``HUMANIZER_BATCH_SIZE`` chunks, so messages × batch size
        is an upper bound: a job's last batch is partial, and many small jobs (one-paragraph documents) would
        each count as a whole batch, 16 times their size. The unfinished jobs' chunks without an output
        (``JobStore.outstanding_chunks``) cap it; with more unfinished jobs than that reads at once, the bound
        alone is used. Control messages are never capped: a merge waiting alone (a document of code blocks
        only, a resumed job with every chunk done) must still wake a worker from zero."""
        per_message = max(1, self.hz.batch_size)
        depths = queue_depths(client, self.op.queues)
        held = unacked_by_queue(client)
        queued = sum(n for q, n in depths.items() if q != CONTROL_QUEUE) * per_message
        in_flight = sum(n for q, n in held.items() if q != CONTROL_QUEUE) * per_message
        left = JobStore(client, prefix=self.hz.key_prefix).outstanding_chunks()
        if left is not None:
            in_flight = min(in_flight, left)
            queued = min(queued, left - in_flight)
        queued += depths.get(CONTROL_QUEUE, 0)
        in_flight += held.get(CONTROL_QUEUE, 0)
        raw = client.get(f"{self.hz.key_prefix}:stats:chunk_seconds")
        return queued, in_flight, float(str(raw)) if raw else 2.0

    # ---- one tick -----------------------------------------------------------------------------
    def tick(self) -> Tick | None:
        """Returns None when another operator replica holds the autoscaler lease."""
        queued: int | None
        in_flight: int | None
        chunk_seconds = 2.0
        try:
            client = self._redis()
            if not self._leader(client):
                return None
            queued, in_flight, chunk_seconds = self._work(client)
            error = ""
        except redis.RedisError as exc:
            queued = in_flight = None
            error = f"{type(exc).__name__}: {exc}"
        name, namespace = self.op.worker_deployment, self.op.worker_namespace
        try:
            dep = k8s.apps().read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._record(Decision(0, NO_DEPLOYMENT, 0, f"Deployment {namespace}/{name} not found"), 0, False)
        self._deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "uid": dep.metadata.uid},
        }
        current = int(dep.spec.replicas if dep.spec.replicas is not None else 1)
        if (dep.metadata.annotations or {}).get(k8s.PAUSE_ANNOTATION, "").lower() == "true":
            return self._record(Decision(current, PAUSED, current, f"annotation {k8s.PAUSE_ANNOTATION}=true"),
                                current, False)
        if queued is not None:
            metrics.QUEUED.set(queued)
            metrics.IN_FLIGHT.set(in_flight or 0)
        decision = decide(
            self.policy, Observation(queued, in_flight, current, time.monotonic(), chunk_seconds), self.state
        )
        if decision.reason == REDIS_UNAVAILABLE:
            decision = Decision(decision.desired, decision.reason, decision.recommended, f"{decision.detail}: {error}")
            self._hold_event(decision.detail)
        patched = False
        if decision.changes:
            k8s.apps().patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": decision.desired}})
            patched = True
        return self._record(decision, current, patched)

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
    stop = getattr(memo, "autoscaler_stop", None)
    task = getattr(memo, "autoscaler_task", None)
    if stop is not None and task is not None:
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
