"""The chart on a real node: every pod Ready under the restricted profile, security for real, the
README's example HumanizeJobs, and the API through its Service with progress over SSE."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster.helpers import wait_until

from .release import Release

pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))
COMPONENTS = ("api", "worker", "operator", "redis")


def test_every_component_ready_under_restricted(release: Release) -> None:
    ns = release.get("namespace", release.namespace)
    assert ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "restricted"
    for component in COMPONENTS:
        assert release.ready_pods(component), f"no Ready {component} pod:\n{release.k('get', 'pods')}"
    pvc = release.get("pvc")["items"]
    assert pvc and all(p["status"]["phase"] == "Bound" for p in pvc), f"Redis' claim not bound: {pvc}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_security_context_holds_in_the_running_process(release: Release, component: str) -> None:
    pod = release.ready_pods(component)[0]
    spec = release.get("pod", pod)["spec"]
    expected_uid = str(spec["securityContext"]["runAsUser"])
    # The process itself (pid 1 of the container): its uid, and no capability of any kind.
    status = release.exec(pod, "cat", "/proc/1/status").stdout
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
    assert uids and uids.group(1) == uids.group(2) == expected_uid, status
    for cap in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
        value = re.search(rf"^{cap}:\s+([0-9a-f]+)", status, re.M)
        assert value and int(value.group(1), 16) == 0, f"{component}: {cap} is {value and value.group(1)}"
    assert re.search(r"^NoNewPrivs:\s+1", status, re.M), f"{component}: no_new_privs not set"
    assert re.search(r"^Seccomp:\s+2", status, re.M), f"{component}: not under a seccomp filter"
    # The root filesystem is read-only.
    write = release.exec(pod, "sh", "-c", "echo x > /probe-write", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr, (write.returncode, write.stderr)


def test_admission_refuses_a_pod_that_breaks_restricted(release: Release) -> None:
    bad = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged-probe"},
        "spec": {"containers": [{"name": "c", "image": "humanizer:0.1.0", "securityContext": {"privileged": True}}]},
    }  # fmt: skip
    proc = release.kubectl("apply", "-n", release.namespace, "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0, "a privileged pod was admitted into the restricted namespace"
    assert "violates PodSecurity" in proc.stderr and "restricted" in proc.stderr, proc.stderr


def test_worker_pods_have_one_celery_node_name_each(release: Release) -> None:
    names = set()
    for pod in release.ready_pods("worker"):
        out = release.exec(pod, "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline").stdout
        names.add((pod, out))
    # Celery's node name comes from the pod's hostname: hostnames differ per pod.
    hosts = {release.exec(p, "cat", "/etc/hostname").stdout.strip() for p, _ in names}
    assert len(hosts) == len(names)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_readme_example_jobs_succeed(release: Release, example: Path) -> None:
    """``kubectl apply -n humanizer -f manifests/examples/X.yaml`` exactly as the README says."""
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
    (job,) = [d for d in docs if d["kind"] == "HumanizeJob"]
    name = job["metadata"]["name"]
    release.k("apply", "-f", str(example))
    try:
        status = release.wait_phase(name, 180)
        assert status["phase"] == "Succeeded", status
        out_name = (job["spec"].get("output") or {}).get("configMapName") or f"{name}-output"
        cm = release.get("configmap", out_name)
        text = cm["data"]["text"]
        source = job["spec"]["input"].get("text") or next(
            d for d in docs if d["kind"] == "ConfigMap")["data"][job["spec"]["input"]["configMapRef"]["key"]]
        # Facts survive: every number of the source is in the output.
        for number in re.findall(r"\b\d+(?:\.\d+)?\b", source):
            assert number in text, f"{number} lost in {out_name}"
        assert text.strip() and text != source
        owners = cm["metadata"].get("ownerReferences") or []
        assert any(o["kind"] == "HumanizeJob" and o["name"] == name for o in owners)
        printed = release.k("get", "hj", name)
        assert "Succeeded" in printed, printed
    finally:
        release.k("delete", "-f", str(example), "--wait=true", "--timeout=60s")


def test_api_through_its_service_with_sse_progress(release: Release, tmp_path: Path) -> None:
    """The CLI submits through the API's ClusterIP Service, follows progress over SSE, fetches the result."""
    url = release.service_url(f"{release.name}-api")
    doc = tmp_path / "doc.md"
    paras = [f"Paragraph API-{i:04d} says that it is important to note the 3 results." for i in range(40)]
    doc.write_text("\n\n".join(paras) + "\n")
    out = tmp_path / "out.md"
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "humanizer"), "submit", str(doc), "--api", url,
         "--token", release.api_token(), "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    markers = re.findall(r"API-\d{4}", out.read_text())
    assert markers == [f"API-{i:04d}" for i in range(40)], markers
    print(f"\nFIGURE API via Service (submit, SSE, result) for 40 chunks: {time.monotonic() - t0:.1f}s")


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, timeout, what, interval=0.5)
