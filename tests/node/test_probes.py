"""Probes for real: a hung worker is restarted by its liveness probe; an API pod that cannot reach Redis
leaves the Service's endpoints and comes back when it can.

Faults are made from the host, inside the pod's own kernel namespaces: the worker's process is stopped
with SIGSTOP (it stays alive but does nothing, the way a deadlocked process does), and the API pod's
traffic to Redis is dropped by an iptables rule in the pod's network namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from typing import Any

import pytest

from tests.cluster.helpers import wait_until

from .release import Release, autoscaling_paused

pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]


def container_pid(node: Any, pod: dict[str, Any]) -> int:
    """The host pid of the pod's first container's process (from containerd)."""
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    info = json.loads(node.crictl("inspect", cid))
    return int(info["info"]["pid"])


def endpoint_ips(rel: Release, service: str) -> set[str]:
    slices = rel.get("endpointslices", "-l", f"kubernetes.io/service-name={service}")["items"]
    return {
        addr
        for s in slices
        for ep in s.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready")
        for addr in ep.get("addresses") or []
    }


def test_api_pod_without_redis_leaves_the_service_endpoints(node: Any, release: Release) -> None:
    rel = release
    service = f"{rel.name}-api"
    wait_until(lambda: len(endpoint_ips(rel, service)) >= 2, 60, "two ready API endpoints")
    pod = rel.pods("api")[0]
    ip = pod["status"]["podIP"]
    redis_ip = rel.get("service", f"{rel.name}-redis")["spec"]["clusterIP"]
    redis_pod_ip = rel.pods("redis")[0]["status"]["podIP"]
    pid = container_pid(node, pod)
    rule = ["OUTPUT", "-p", "tcp", "--dport", "6379", "-j", "REJECT", "--reject-with", "tcp-reset"]
    nsenter = ["nsenter", "-t", str(pid), "-n", "iptables"]
    subprocess.run([*nsenter, "-I", *rule], check=True, capture_output=True)
    try:
        wait_until(lambda: ip not in endpoint_ips(rel, service), 90,
                   f"API pod {ip} to leave the endpoints while Redis ({redis_ip} / {redis_pod_ip}) is unreachable")
        assert endpoint_ips(rel, service), "the other API pod must stay in the endpoints"
    finally:
        subprocess.run([*nsenter, "-D", *rule], check=True, capture_output=True)
    wait_until(lambda: ip in endpoint_ips(rel, service), 90, f"API pod {ip} back in the endpoints")


def test_hung_worker_is_restarted_by_its_liveness_probe(node: Any, release: Release) -> None:
    # Paused so the operator cannot scale this pod away while it is stopped (after the monitoring tests'
    # load it may still be scaling down); a pod already terminating is not a candidate either.
    with autoscaling_paused(release):
        _hung_worker_restarted(node, release)


def _hung_worker_restarted(node: Any, rel: Release) -> None:
    wait_until(lambda: rel.ready_pods("worker"), 120, "a Ready worker pod", interval=1)
    name = rel.ready_pods("worker")[0]
    pod = rel.get("pod", name)
    probe = pod["spec"]["containers"][0].get("livenessProbe")
    assert probe, "the worker container has no liveness probe"
    restarts = int(pod["status"]["containerStatuses"][0]["restartCount"])
    pid = container_pid(node, pod)
    os.kill(pid, signal.SIGSTOP)
    try:
        def restarted() -> bool:
            status = rel.get("pod", name)["status"]["containerStatuses"][0]
            return int(status["restartCount"]) > restarts

        # the heartbeat's allowed age, the probe's failures, then its own kill grace, plus slack
        max_age = float(probe["exec"]["command"][-1])
        budget = (max_age + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
                  + probe.get("terminationGracePeriodSeconds", 30) + 60)
        wait_until(restarted, budget, f"the liveness probe to restart hung worker {name}", interval=1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    events = rel.k("get", "events", "--field-selector", f"involvedObject.name={name}")
    assert "Liveness probe failed" in events or "Unhealthy" in events, events
    wait_until(lambda: name in rel.ready_pods("worker"), 120, f"{name} Ready again")
