"""The chart on a kind cluster with the real image (``make e2e-kind`` builds and loads the image,
installs the chart as release ``humanizer`` in namespace ``humanizer`` and runs this module).

* The example HumanizeJob (manifests/examples/humanizejob-inline.yaml) reaches Succeeded, its output
  ConfigMap holds the rewritten text, and ``kubectl get hj`` shows the Phase/Progress columns.
* A burst of ~400 queued chunks (a HumanizeJob with a long generated document and a small
  ``chunking.maxTokens``) scales the worker Deployment up (the operator's autoscaler), the job
  succeeds, and the Deployment returns to its minimum after the stabilisation window.

For the burst the test shortens the operator's scale-down window, caps its maximum (a kind node is
small) and gives the offline provider a small latency (so the burst lasts long enough to be seen);
the original container environments are put back afterwards.

Skipped (with the reason, also printed in the terminal summary) when Docker or kind is missing or the
context in ``HUMANIZER_E2E_CONTEXT`` does not exist; see tests/e2e/kind_env.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.helpers import wait_until

from .kind_env import kubectl_path, unavailable_reason

_REASON = unavailable_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests" / "examples" / "humanizejob-inline.yaml"
CONTEXT = os.environ.get("HUMANIZER_E2E_CONTEXT", "")
NAMESPACE = os.environ.get("HUMANIZER_E2E_NAMESPACE", "humanizer")
RELEASE = os.environ.get("HUMANIZER_E2E_RELEASE", "humanizer")

BURST_CHUNKS = 400
BURST_MAX_REPLICAS = 4
BURST_WINDOW = 20  # seconds: the operator's scale-down stabilisation during the burst test
OFFLINE_LATENCY = "0.5"  # seconds per chunk (8 threads per worker: ~25 s of work for one worker)


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
    binary = kubectl_path()
    assert binary, "kubectl not found"
    proc = subprocess.run([binary, "--context", CONTEXT, *args], input=input, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def get_json(*args: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", *args, "-o", "json").stdout))


def component(name: str) -> dict[str, Any]:
    """The release's Deployment of one component (api, worker, operator)."""
    items = get_json("deployments", "-n", NAMESPACE, "-l",
                     f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={name}")["items"]
    assert len(items) == 1, (
        f"expected one {name} Deployment of release {RELEASE} in {NAMESPACE} (context {CONTEXT}), found "
        f"{[i['metadata']['name'] for i in items]}: is the chart installed (`make e2e-kind`)?"
    )
    return dict(items[0])


def hj_status(name: str) -> dict[str, Any]:
    proc = kubectl("get", "hj", name, "-n", NAMESPACE, "-o", "json", check=False)
    return dict(json.loads(proc.stdout).get("status") or {}) if proc.returncode == 0 else {}


def wait_phase(name: str, timeout: float) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def done() -> bool:
        nonlocal last
        last = hj_status(name)
        return last.get("phase") in {"Succeeded", "Failed"}

    try:
        wait_until(done, timeout, f"HumanizeJob {name} to finish", interval=1.0)
    except AssertionError as exc:
        logs = kubectl("logs", f"deployment/{component('operator')['metadata']['name']}", "-n", NAMESPACE,
                       "--tail=60", check=False).stdout
        raise AssertionError(f"{exc}; status {last}\noperator log:\n{logs}") from None
    return last


def delete_hj(name: str) -> None:
    kubectl("delete", "hj", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s",
            check=False, timeout=150)


@pytest.fixture(scope="module", autouse=True)
def release_ready() -> None:
    """The chart is installed and its operator and workers are available (fails, not skips, otherwise)."""
    for name in ("operator", "worker"):
        dep = component(name)["metadata"]["name"]
        kubectl("rollout", "status", f"deployment/{dep}", "-n", NAMESPACE, "--timeout=180s", timeout=200)


def test_example_humanizejob_succeeds() -> None:
    (job,) = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    name = job["metadata"]["name"]
    delete_hj(name)  # a leftover of an earlier run
    kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLE))
    try:
        status = wait_phase(name, 180)
        assert status["phase"] == "Succeeded", status
        assert status["progress"]["done"] == status["progress"]["total"] > 0, status
        cm = get_json("configmap", status["outputRef"]["name"], "-n", NAMESPACE)
        text = cm["data"]["text"]
        assert text.strip() and text != job["spec"]["input"]["text"]
        assert "2.4" in text and "35 percent" in text  # facts survive the rewrite
        (owner,) = cm["metadata"]["ownerReferences"]
        assert owner["kind"] == "HumanizeJob" and owner["name"] == name
        table = kubectl("get", "hj", name, "-n", NAMESPACE).stdout
        header, row = table.splitlines()[:2]
        assert header.split()[:3] == ["NAME", "PHASE", "PROGRESS"], table
        assert row.split()[:3] == [name, "Succeeded", status["progress"]["summary"]], table
    finally:
        delete_hj(name)


class EnvOverride:
    """Set variables on a Deployment's first container; ``restore()`` puts the original env list back."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self.original: list[dict[str, Any]] | None = None

    def apply(self, values: dict[str, str]) -> None:
        dep = get_json("deployment", self.deployment, "-n", NAMESPACE)
        self.original = dep["spec"]["template"]["spec"]["containers"][0].get("env", [])
        kubectl("set", "env", f"deployment/{self.deployment}", "-n", NAMESPACE,
                *(f"{k}={v}" for k, v in values.items()))
        self.rollout()

    def restore(self) -> None:
        if self.original is None:
            return
        patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/env", "value": self.original}]
        kubectl("patch", "deployment", self.deployment, "-n", NAMESPACE, "--type=json", "-p", json.dumps(patch))
        self.rollout()

    def rollout(self) -> None:
        kubectl("rollout", "status", f"deployment/{self.deployment}", "-n", NAMESPACE, "--timeout=180s",
                timeout=200)


@pytest.fixture
def burst_settings() -> Iterator[tuple[str, int]]:
    """Operator: short scale-down window, small maximum; workers: a little provider latency."""
    operator = component("operator")
    worker = component("worker")["metadata"]["name"]
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    assert env.get("HUMANIZER_AUTOSCALE_ENABLED") == "true", "the chart's autoscaler is off in this release"
    minimum = int(env.get("HUMANIZER_AUTOSCALE_MIN_REPLICAS") or 1)
    op_env, worker_env = EnvOverride(operator["metadata"]["name"]), EnvOverride(worker)
    try:
        worker_env.apply({"HUMANIZER_OFFLINE_LATENCY": OFFLINE_LATENCY})
        op_env.apply({"HUMANIZER_AUTOSCALE_SCALE_DOWN_STABILIZATION_SECONDS": str(BURST_WINDOW),
                      "HUMANIZER_AUTOSCALE_MAX_REPLICAS": str(BURST_MAX_REPLICAS)})
        yield worker, minimum
    finally:
        op_env.restore()
        worker_env.restore()


def document(paragraphs: int) -> str:
    return "\n\n".join(
        f"Paragraph {i}: it is important to note that the platform leverages robust synergies to deliver "
        f"value number {i * 7} for every stakeholder."
        for i in range(paragraphs)
    )


def test_burst_scales_workers_up_and_back_down(burst_settings: tuple[str, int]) -> None:
    worker, minimum = burst_settings

    def replicas() -> int:
        return int(get_json("deployment", worker, "-n", NAMESPACE)["spec"].get("replicas") or 0)

    wait_until(lambda: replicas() == minimum, BURST_WINDOW + 120,
               f"the worker Deployment at its minimum {minimum}", interval=1.0)
    name = f"e2e-burst-{uuid.uuid4().hex[:6]}"
    job = {"apiVersion": "humanizer.dev/v1alpha1", "kind": "HumanizeJob", "metadata": {"name": name},
           "spec": {"input": {"text": document(BURST_CHUNKS)}, "chunking": {"maxTokens": 40},
                    "verification": {"enabled": False}}}
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(job))
    try:
        t0 = time.monotonic()
        peak = {"spec": minimum, "ready": 0}

        def scaled_up() -> bool:
            dep = get_json("deployment", worker, "-n", NAMESPACE)
            peak["spec"] = max(peak["spec"], int(dep["spec"].get("replicas") or 0))
            peak["ready"] = max(peak["ready"], int(dep.get("status", {}).get("readyReplicas") or 0))
            return peak["ready"] > minimum

        wait_until(scaled_up, 120, f"more than {minimum} ready worker pods", interval=0.5)
        print(f"scale-up: {peak} after {time.monotonic() - t0:.1f}s")

        status = wait_phase(name, 600)
        assert status["phase"] == "Succeeded", status
        total = int(status["progress"]["total"])
        assert int(status["progress"]["done"]) == total and total >= BURST_CHUNKS * 0.9, status
        assert minimum < peak["spec"] <= BURST_MAX_REPLICAS, peak

        drained = time.monotonic()
        wait_until(lambda: replicas() == minimum, BURST_WINDOW + 120, f"the scale-down to {minimum}", interval=1.0)
        print(f"scale-down {time.monotonic() - drained:.1f}s after the job finished (window {BURST_WINDOW}s)")

        def pods_follow() -> bool:
            pods = get_json("pods", "-n", NAMESPACE, "-l",
                            f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=worker")["items"]
            return len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == minimum

        # warm shutdown: up to the grace period
        wait_until(pods_follow, 400, f"{minimum} worker pod(s) left", interval=1.0)
    finally:
        delete_hj(name)
