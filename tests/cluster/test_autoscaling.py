"""Worker autoscaling from queue depth: a burst scales the worker Deployment up within the reaction
target, the (pod-harness) worker processes follow, the queue drains, and after the stabilisation
window the Deployment returns to its minimum without losing a chunk. Plus: the pause annotation,
holding the size (with an Event) while Redis cannot be read, and the scale-down choosing its victims
(pod-deletion costs from each worker's running chunks: the real ReplicaSet controller removes the idle
pods and keeps the busy one)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kubernetes import client, watch

from humanizer.jobs.store import JobStore

from .conftest import Cluster
from .helpers import Kubectl, wait_until
from .operator_support import (
    WORKER_SELECTOR,
    Backend,
    OperatorProcess,
    backend,
    wait_for_events,
    worker_deployment,
)
from .pod_harness import PodHarness

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

MAX_REPLICAS = 4
WINDOW = 8.0
REACTION_TARGET = 5.0  # seconds from the backlog appearing to the Deployment being patched
REACTION_ASSERT = 8.0  # the assertion leaves room for a loaded 2-core machine


def shared_env(be: Backend) -> dict[str, str]:
    """One chunk per task here: the 400-chunk backlog must outlast the new workers' start-up for the
    "consuming" figure, and queue depth then counts chunks exactly."""
    return {**be.env, "HUMANIZER_BATCH_SIZE": "1"}


def consuming_pods(log_dir: Path) -> int:
    """Pods whose worker has finished at least one batch (its log says so)."""
    return sum(1 for f in log_dir.glob("*.log") if "batch.done" in f.read_text(errors="replace"))


@pytest.fixture
def env() -> Iterator[Backend]:
    with backend(latency=0.15) as be:
        yield be


SUBMIT = """
import json, sys
from humanizer.jobs.models import JobRequest
from humanizer.jobs.submit import submit_job
tag = sys.argv[2] if len(sys.argv) > 2 else "Chunk"
chunks = [f"{tag} {i}: it is important to note that we leverage synergy number {i}." for i in range(int(sys.argv[1]))]
print(submit_job(JobRequest.model_validate({"chunks": chunks, "verify": False})).job_id)
"""


def submit_chunks(be: Backend, count: int, tag: str = "Chunk") -> str:
    """Submit a job of ``count`` chunks from a separate process (the one submission path, like the API)."""
    proc = subprocess.run([sys.executable, "-c", SUBMIT, str(count), tag], env={**os.environ, **shared_env(be)},
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.strip().splitlines()[-1]


def operator_env(be: Backend, namespace: str) -> dict[str, str]:
    return {
        **shared_env(be),
        "HUMANIZER_WORKER_DEPLOYMENT": "worker",
        "HUMANIZER_WORKER_NAMESPACE": namespace,
        "HUMANIZER_AUTOSCALE_MIN_REPLICAS": "1",
        "HUMANIZER_AUTOSCALE_MAX_REPLICAS": str(MAX_REPLICAS),
        "HUMANIZER_AUTOSCALE_TARGET_PER_WORKER": "8",
        "HUMANIZER_AUTOSCALE_SCALE_DOWN_STABILIZATION_SECONDS": str(WINDOW),
        "HUMANIZER_AUTOSCALE_INTERVAL_SECONDS": "1",
        "CELERY_WORKER_CONCURRENCY": "4",
    }


def replicas(apps_v1: client.AppsV1Api, namespace: str) -> int:
    return int(apps_v1.read_namespaced_deployment("worker", namespace).spec.replicas)


def test_burst_scales_up_drains_and_scales_back(
    env: Backend, cluster: Cluster, core_v1: client.CoreV1Api, apps_v1: client.AppsV1Api, kubectl: Kubectl,
    namespace: str, tmp_path: Path,
) -> None:
    be = env
    kubectl.apply(worker_deployment("worker", shared_env(be), replicas=1, concurrency=4), namespace=namespace)
    with PodHarness(core_v1, namespace, WORKER_SELECTOR, extra_env=shared_env(be), log_dir=tmp_path / "pods",
                    grace=60) as harness:
        harness.wait_for_alive(1, timeout=60)
        with OperatorProcess(cluster.kubeconfig, namespace, operator_env(be, namespace),
                             tmp_path / "operator.log") as op:
            time.sleep(2)  # a few idle ticks: steady at the minimum
            assert replicas(apps_v1, namespace) == 1

            t0 = time.monotonic()
            job_id = submit_chunks(be, 400)
            t_queued = time.monotonic()  # the chord is sent just before the submitting process exits
            wait_until(lambda: replicas(apps_v1, namespace) == MAX_REPLICAS, 30,
                       f"the worker Deployment to reach {MAX_REPLICAS} replicas", interval=0.1)
            reaction = time.monotonic() - t_queued
            print(f"autoscaler reaction: {reaction:.2f}s after the submission returned, "
                  f"{time.monotonic() - t0:.2f}s after it started (400 chunks -> replicas {MAX_REPLICAS})")
            assert reaction <= REACTION_ASSERT, (
                f"reaction {reaction:.1f}s (target {REACTION_TARGET}s)\n{op.logs()[-3000:]}"
            )

            harness.wait_for_alive(MAX_REPLICAS, timeout=60)  # the local worker processes follow
            wait_until(lambda: consuming_pods(tmp_path / "pods") >= MAX_REPLICAS, 60,
                       f"{MAX_REPLICAS} worker processes consuming", interval=0.1)
            print(f"workers consuming: {time.monotonic() - t_queued:.2f}s after the submission returned "
                  f"({MAX_REPLICAS} processes have each finished a batch)")
            store = JobStore(be.redis_client())
            wait_until(lambda: store.view(job_id, with_result=False).status.terminal, 120, "the queue to drain")
            drained = time.monotonic()
            view = store.view(job_id, with_result=False)
            assert view.status.value == "SUCCESS", view
            assert view.progress.completed == 400 and view.progress.failed == 0

            wait_until(lambda: replicas(apps_v1, namespace) == 1, WINDOW + 30, "the scale-down to the minimum")
            after = time.monotonic() - drained
            print(f"scale-down {after:.1f}s after the drain (window {WINDOW:.0f}s)")
            assert after >= WINDOW - 2.0, "scaled down before the stabilisation window"
            harness.wait_for_alive(1, timeout=90)
            assert not [p for p in harness.exited() if p.proc.returncode not in (0, -15, None)], \
                "a worker died instead of shutting down warm"
            assert "scale_up" in op.logs() and "scale_down" in op.logs()
            assert be.fake.stats()["total"] == 400  # every chunk rewritten exactly once, none lost


def test_pause_annotation_and_redis_outage_hold_the_size(
    env: Backend, cluster: Cluster, core_v1: client.CoreV1Api, apps_v1: client.AppsV1Api, kubectl: Kubectl,
    namespace: str, tmp_path: Path,
) -> None:
    be = env
    dep = worker_deployment("worker", shared_env(be), replicas=3, concurrency=4)
    dep["metadata"]["annotations"] = {"humanizer.dev/autoscale-paused": "true"}
    kubectl.apply(dep, namespace=namespace)
    with OperatorProcess(cluster.kubeconfig, namespace, operator_env(be, namespace), tmp_path / "operator.log") as op:
        time.sleep(WINDOW + 3)  # idle for longer than the window: would scale down to 1 if not paused
        assert replicas(apps_v1, namespace) == 3
        assert "paused" in op.logs()

        kubectl("annotate", "deployment", "worker", "-n", namespace, "humanizer.dev/autoscale-paused-")
        be.redis.stop()
        events = wait_for_events(core_v1, namespace, "AutoscalerHold", 30)
        assert "holding the current size" in events[0].message
        assert events[0].involved_object.name == "worker"
        time.sleep(WINDOW + 2)
        assert replicas(apps_v1, namespace) == 3, "the size changed while Redis was unreadable"
        be.redis.start()
        wait_until(lambda: replicas(apps_v1, namespace) == 1, WINDOW + 30, "the scale-down once Redis is back")


# ---- scale-down victims ---------------------------------------------------------------------------
COST = "controller.kubernetes.io/pod-deletion-cost"
SLOW = "SLOW-CHUNK"
SLOW_SECONDS = 35.0


def named_workers(dep: dict[str, Any]) -> dict[str, Any]:
    """Celery names a worker ``celery@<hostname>``, and a pod's hostname is its name; the pod harness
    runs every pod on this machine, so each worker is given its pod's name explicitly."""
    container = dep["spec"]["template"]["spec"]["containers"][0]
    container["env"].insert(0, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    container["command"] += ["--hostname", "celery@$(POD_NAME)"]
    return dep


class PodRecorder:
    """Watches the worker pods and remembers, per pod, the deletion cost it last carried before it
    started terminating, and which pods went away. A watch, not polling: the operator's annotation and
    the ReplicaSet's deletion come within milliseconds of each other."""

    def __init__(self, core_v1: client.CoreV1Api, namespace: str) -> None:
        self.core_v1, self.namespace = core_v1, namespace
        self.cost: dict[str, str | None] = {}
        self.gone: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _seen(self, pod: Any, deleted: bool) -> None:
        name = pod.metadata.name
        if name in self.gone:
            return
        cost = (pod.metadata.annotations or {}).get(COST)
        self.cost[name] = cost if cost is not None else self.cost.get(name)
        if deleted or pod.metadata.deletion_timestamp is not None:
            self.gone.add(name)

    def _run(self) -> None:
        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = self.core_v1.list_namespaced_pod(self.namespace, label_selector=WORKER_SELECTOR)
                    for pod in listed.items:
                        self._seen(pod, False)
                    version = listed.metadata.resource_version
                for event in watch.Watch().stream(
                    self.core_v1.list_namespaced_pod, self.namespace, label_selector=WORKER_SELECTOR,
                    resource_version=version, timeout_seconds=1, _request_timeout=5,
                ):
                    self._seen(event["object"], event["type"] == "DELETED")
                    version = event["object"].metadata.resource_version
            except Exception:  # an expired version or an API hiccup: list again
                version = None
                self._stop.wait(0.1)

    def __enter__(self) -> PodRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def pod_that_finished(log_dir: Path, job_id: str) -> list[str]:
    """Pods whose worker log has a finished batch of ``job_id``."""
    def finished(path: Path) -> bool:
        return any("batch.done" in line and job_id in line for line in path.read_text(errors="replace").splitlines())

    return sorted(f.stem for f in log_dir.glob("*.log") if finished(f))


def test_scale_down_removes_idle_pods_first(
    env: Backend, cluster: Cluster, core_v1: client.CoreV1Api, apps_v1: client.AppsV1Api, kubectl: Kubectl,
    namespace: str, tmp_path: Path,
) -> None:
    """After a burst, one chunk is still running (the fake provider holds it SLOW_SECONDS) on one of the
    four pods when the stabilisation window ends. Before lowering the replicas the operator annotates
    every worker pod with its running chunks as pod-deletion-cost: the busy pod 1, the idle ones 0. The
    ReplicaSet controller then removes the three idle pods and keeps the busy one, and the chunk finishes
    where it ran; once the ReplicaSet is done, the spent cost is removed from the pod that stayed.
    (Without the costs the ReplicaSet's own ranking decides: pods ready for about as long are ordered by
    UID, so the busy pod goes about as often as any other.)"""
    be = env
    be.fake.configure(faults=[{"kind": "timeout", "match": SLOW, "hang": SLOW_SECONDS}])
    window = 12.0
    kubectl.apply(named_workers(worker_deployment("worker", shared_env(be), replicas=1, concurrency=4)),
                  namespace=namespace)
    log_dir = tmp_path / "pods"
    op_env = {**operator_env(be, namespace), "HUMANIZER_AUTOSCALE_SCALE_DOWN_STABILIZATION_SECONDS": str(window)}
    with PodHarness(core_v1, namespace, WORKER_SELECTOR, extra_env=shared_env(be), log_dir=log_dir,
                    grace=60) as harness, PodRecorder(core_v1, namespace) as seen:
        harness.wait_for_alive(1, timeout=60)
        with OperatorProcess(cluster.kubeconfig, namespace, op_env, tmp_path / "operator.log") as op:
            burst = submit_chunks(be, 400)
            wait_until(lambda: replicas(apps_v1, namespace) == MAX_REPLICAS, 30, "the scale-up", interval=0.1)
            harness.wait_for_alive(MAX_REPLICAS, timeout=60)
            wait_until(lambda: consuming_pods(log_dir) >= MAX_REPLICAS, 60, "every worker consuming", interval=0.1)
            store = JobStore(be.redis_client())
            wait_until(lambda: store.view(burst, with_result=False).status.terminal, 120, "the burst to drain")
            assert replicas(apps_v1, namespace) == MAX_REPLICAS, "scaled down before the window: nothing to steer"

            slow = submit_chunks(be, 1, tag=SLOW)
            wait_until(lambda: be.fake.stats()["in_flight"] == 1, 20, "the slow chunk to run on one pod", interval=0.1)
            control = Celery("test-control", broker=be.redis.url, set_as_current=False)
            active = control.control.inspect(timeout=2).active() or {}
            control.close()
            busy = [node.split("@", 1)[1] for node, tasks in active.items() if tasks]
            assert len(busy) == 1, active
            [busy_pod] = busy

            wait_until(lambda: replicas(apps_v1, namespace) == 1, window + 30, "the scale-down to the minimum")
            harness.wait_for_alive(1, timeout=90)
            pods = core_v1.list_namespaced_pod(namespace, label_selector=WORKER_SELECTOR).items
            left = [p.metadata.name for p in pods if p.metadata.deletion_timestamp is None]
            print(f"pod-deletion costs seen: {seen.cost}; removed: {sorted(seen.gone)}; busy: {busy_pod}")
            assert left == [busy_pod], f"the ReplicaSet kept {left}, not the busy pod {busy_pod}; costs {seen.cost}"
            assert be.fake.stats()["in_flight"] == 1, "the slow chunk ended before the scale-down: nothing was busy"

            wait_until(lambda: store.view(slow, with_result=False).status.terminal, SLOW_SECONDS + 30,
                       "the slow chunk to finish")
            assert store.view(slow, with_result=False).status.value == "SUCCESS"
            assert pod_that_finished(log_dir, slow) == [busy_pod]  # it finished where it ran
            assert len(seen.cost) == MAX_REPLICAS
            assert seen.cost[busy_pod] == "1", seen.cost  # its one running chunk
            idle = sorted(set(seen.cost) - {busy_pod})
            assert all(seen.cost[p] == "0" for p in idle), seen.cost  # idle pods: the lowest cost
            assert sorted(seen.gone) == idle  # the ReplicaSet removed exactly the idle pods
            assert COST in op.logs()

            def cleared() -> bool:
                pod = core_v1.read_namespaced_pod(busy_pod, namespace)
                return COST not in (pod.metadata.annotations or {})

            wait_until(cleared, 10, "the spent deletion cost to be removed from the pod that stayed")
            assert be.fake.stats()["total"] == 401  # no chunk was cut short and redone
