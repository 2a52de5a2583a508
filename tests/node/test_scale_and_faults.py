"""Real pods under load: the operator scales the workers from a 600-chunk backlog (new pods start from
the image and consume), then faults on real pods mid-job. Every job ends Succeeded with each chunk's
marker exactly once, in order.

The fake model runs as a pod with 1.5 s per reply, so a 600-chunk job lasts long enough for pods to
start and faults to land while it runs; each fault test asserts, from a status read *after* the fault,
that the job had not finished. Recovery settings are shortened with one ``helm upgrade --reuse-values``
(task time limit 25 s, visibility timeout 40 s, stall detection 15 s, scale-down window 15 s, at most 4
workers: the node has 2 CPUs and each worker pod requests 250m) and 16 provider calls in flight per worker
pod: with the chart's 64, the two first pods finished the 600-chunk backlog (~7 s) before a new pod
consumed on a slower CI machine; with 16 it lasts ~28 s.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.cluster.helpers import wait_until

from .release import CHART, Release, fake_llm_objects

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

FAST_RECOVERY = [
    "--set", "operator.autoscaler.maxReplicas=4", "--set", "operator.autoscaler.scaleDownStabilizationSeconds=15",
    "--set", "config.celery.taskSoftTimeLimit=20", "--set", "config.celery.taskTimeLimit=25",
    "--set", "config.celery.taskRetryMaxDelay=5", "--set", "config.celery.visibilityTimeout=40",
    "--set-string", "config.extraEnv.HUMANIZER_STALL_SECONDS=15", "--set", "worker.calls=16",
]  # fmt: skip
LATENCY = 1.5


def document(n: int, tag: str) -> str:
    return "\n\n".join(
        f"Paragraph {tag}-{i:04d} opens here. It is important to note that the team utilizes robust tools. "
        "Furthermore, the results were reviewed in detail by the group."
        for i in range(n)
    ) + "\n"


@pytest.fixture(scope="module")
def loaded(release: Release) -> Iterator[Release]:
    """The release with shortened recovery settings and a slow fake model."""
    release.kubectl.apply(fake_llm_objects(release.app_image, latency=LATENCY), namespace=release.namespace)
    release.k("rollout", "status", "deployment/fake-llm", "--timeout=120s", timeout=130)
    release.helm("upgrade", release.name, str(CHART), "-n", release.namespace, "--reuse-values", *FAST_RECOVERY,
                 "--wait", "--timeout", "5m", timeout=330)  # fmt: skip
    release.wait_all_ready()
    yield release


class Job:
    """A HumanizeJob of ``n`` one-paragraph chunks, each carrying a unique marker."""

    def __init__(self, rel: Release, n: int, tag: str | None = None, extra_paragraph: str | None = None) -> None:
        self.rel, self.n = rel, n
        self.tag = tag or f"N{uuid.uuid4().hex[:4].upper()}"
        self.name = f"load-{self.tag.lower()}"
        text = document(n, self.tag) + (f"\n{extra_paragraph}\n" if extra_paragraph else "")
        body = {
            "apiVersion": "humanizer.dev/v1alpha1", "kind": "HumanizeJob", "metadata": {"name": self.name},
            "spec": {"input": {"text": text}, "chunking": {"maxTokens": 40},
                     "verification": {"enabled": False}},
        }  # fmt: skip
        rel.kubectl("create", "-n", rel.namespace, "-f", "-", input=yaml.safe_dump(body))
        self.created = time.monotonic()

    def progress(self) -> dict[str, Any]:
        status = self.rel.hj(self.name).get("status") or {}
        return {"phase": status.get("phase"), **(status.get("progress") or {})}

    def wait_running(self, at_least: int = 1, timeout: float = 120) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def started() -> bool:
            nonlocal last
            last = self.progress()
            return last.get("phase") == "Running" and int(last.get("done") or 0) >= at_least

        wait_until(started, timeout, f"{self.name} Running with {at_least}+ chunks done", interval=0.3)
        return last

    def assert_still_running(self, what: str) -> None:
        now = self.progress()
        assert now.get("phase") == "Running" and int(now.get("done") or 0) < self.n, (
            f"the job was no longer running when {what} hit: {now}"
        )

    def finish(self, timeout: float = 420) -> dict[str, Any]:
        status = self.rel.wait_phase(self.name, timeout)
        assert status["phase"] == "Succeeded", status
        text = self.rel.get("configmap", f"{self.name}-output")["data"]["text"]
        found = re.findall(rf"{self.tag}-\d{{4}}", text)
        expected = [f"{self.tag}-{i:04d}" for i in range(self.n)]
        assert found == expected, f"{len(found)} markers for {self.n} chunks (missing or doubled)"
        return status

    def delete(self) -> None:
        self.rel.k("delete", "hj", self.name, "--ignore-not-found", "--wait=true", "--timeout=120s", timeout=150)


def worker_pods(rel: Release) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in rel.pods("worker") if not p["metadata"].get("deletionTimestamp")}


METRICS_SCRIPT = (
    "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9808/metrics', timeout=2).read().decode())"
)


def chunks_processed(rel: Release, pod: str) -> float:
    """A worker pod's humanizer_chunks_processed_total, read from its own metrics port (kubectl exec)."""
    proc = rel.exec(pod, "python", "-c", METRICS_SCRIPT, check=False)
    if proc.returncode != 0:
        return 0.0
    found = re.findall(r"^humanizer_chunks_processed_total\{[^}]*\} ([0-9.e+]+)$", proc.stdout, re.M)
    return sum(float(m) for m in found)


def test_backlog_scales_workers_new_pods_consume_and_scale_back(loaded: Release) -> None:
    rel = loaded
    deployment = rel.deployment("worker")["metadata"]["name"]
    before = set(worker_pods(rel))
    replicas_before = rel.get("deployment", deployment)["spec"]["replicas"]
    job = Job(rel, 600)
    t = {}
    try:
        def scaled() -> bool:
            return int(rel.get("deployment", deployment)["spec"]["replicas"]) > replicas_before

        wait_until(scaled, 60, "the operator to scale the worker Deployment up", interval=0.2)
        t["patched"] = time.monotonic() - job.created

        def new_ready() -> list[str]:
            return [n for n in rel.ready_pods("worker") if n not in before]

        wait_until(lambda: bool(new_ready()), 120, "a new worker pod Ready", interval=0.3)
        t["ready"] = time.monotonic() - job.created

        def new_consuming() -> bool:
            return any(chunks_processed(rel, n) > 0 for n in new_ready())

        wait_until(new_consuming, 120, "a new worker pod consuming chunks", interval=0.3)
        t["consuming"] = time.monotonic() - job.created
        job.assert_still_running("the new pods started consuming")
        peak = int(rel.get("deployment", deployment)["spec"]["replicas"])
        job.finish()
        print(f"\nFIGURE autoscaling on real pods, 600 chunks at {LATENCY}s: backlog -> Deployment patched "
              f"{t['patched']:.1f}s, -> first new pod Ready {t['ready']:.1f}s, -> consuming {t['consuming']:.1f}s; "
              f"replicas {replicas_before} -> {peak}")

        def scaled_back() -> bool:
            return int(rel.get("deployment", deployment)["spec"]["replicas"]) <= replicas_before

        wait_until(scaled_back, 120, "the workers to scale back down", interval=1)
    finally:
        job.delete()


def _force_delete_worker(rel: Release) -> None:
    victim = next(iter(worker_pods(rel)))
    rel.k("delete", "pod", victim, "--grace-period=0", "--force")


def _delete_redis(rel: Release) -> None:
    (pod,) = [p["metadata"]["name"] for p in rel.pods("redis")]
    rel.k("delete", "pod", pod, "--wait=false")


def _delete_operator(rel: Release) -> None:
    for pod in rel.pods("operator"):
        rel.k("delete", "pod", pod["metadata"]["name"], "--wait=false")


def _helm_upgrade_rolls_workers(rel: Release) -> None:
    rel.helm("upgrade", rel.name, str(CHART), "-n", rel.namespace, "--reuse-values",
             "--set-string", f"worker.podAnnotations.roll={uuid.uuid4().hex[:6]}", timeout=120)  # fmt: skip


FAULTS: dict[str, Callable[[Release], None]] = {
    "worker-pod-force-deleted": _force_delete_worker,
    "redis-pod-deleted": _delete_redis,
    "operator-pod-deleted": _delete_operator,
    "helm-upgrade-rolls-workers": _helm_upgrade_rolls_workers,
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_mid_job_every_chunk_exactly_once(loaded: Release, fault: str) -> None:
    rel = loaded
    # Large enough to still run when the fault lands even with 4 workers (64 calls at once, ~23 s):
    # a fault after the last chunk tests nothing, and assert_still_running says so.
    job = Job(rel, 1000)
    try:
        job.wait_running(at_least=16)
        t0 = time.monotonic()
        FAULTS[fault](rel)
        job.assert_still_running(fault)
        job.finish()
        print(f"\nFIGURE fault {fault}: job of {job.n} chunks finished {time.monotonic() - t0:.1f}s after the fault")
        rel.wait_all_ready(timeout=180)
    finally:
        job.delete()


def test_scale_down_stops_busy_workers_without_losing_chunks(loaded: Release) -> None:
    """Manual control (autoscale paused), three busy workers scaled to one: warm shutdown, no chunk lost."""
    rel = loaded
    deployment = rel.deployment("worker")["metadata"]["name"]
    rel.k("annotate", "deployment", deployment, "humanizer.dev/autoscale-paused=true", "--overwrite")
    try:
        rel.k("scale", "deployment", deployment, "--replicas=3")
        wait_until(lambda: len(rel.ready_pods("worker")) >= 3, 120, "3 worker pods Ready", interval=0.5)
        job = Job(rel, 1000)
        try:
            job.wait_running(at_least=32)
            # A pod's counter shows its first chunks only after they reported back (and its metrics port
            # answered a kubectl exec): wait for two busy pods, then check the job still runs.
            counts: dict[str, float] = {}

            def several_busy() -> bool:
                counts.clear()
                counts.update({n: chunks_processed(rel, n) for n in worker_pods(rel)})
                return sum(1 for c in counts.values() if c > 0) >= 2

            try:
                wait_until(several_busy, 60, "two worker pods with chunks processed", interval=0.5)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; chunks per pod {counts}, job {job.progress()}") from None
            job.assert_still_running("the scale-down was about to begin")
            rel.k("scale", "deployment", deployment, "--replicas=1")
            job.assert_still_running("the scale-down")
            job.finish()
        finally:
            job.delete()
    finally:
        rel.k("annotate", "deployment", deployment, "humanizer.dev/autoscale-paused-")
