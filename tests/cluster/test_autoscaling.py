"""Worker autoscaling from queue depth: a burst scales the worker Deployment up within the reaction
target, the (pod-harness) worker processes follow, the queue drains, and after the stabilisation
window the Deployment returns to its minimum without losing a chunk. Plus: the pause annotation, and
holding the size (with an Event) while Redis cannot be read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

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
chunks = [f"Chunk {i}: it is important to note that we leverage synergy number {i}." for i in range(int(sys.argv[1]))]
print(submit_job(JobRequest.model_validate({"chunks": chunks, "verify": False})).job_id)
"""


def submit_chunks(be: Backend, count: int) -> str:
    """Submit a job of ``count`` chunks from a separate process (the one submission path, like the API)."""
    proc = subprocess.run([sys.executable, "-c", SUBMIT, str(count)], env={**os.environ, **shared_env(be)},
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
