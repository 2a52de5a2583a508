"""Redis as users run it in production, on real pods: a primary, one replica and three Sentinels, the
primary force-deleted mid-job. The job ends Succeeded with each chunk's marker exactly once, in order.

The Redis set runs in its own namespace (``redis-ha``, restricted Pod Security) from the tier's Redis image
(Debian's ``redis-server``; ``redis-server --sentinel`` for the Sentinels), as bare pods, so that a deleted
primary stays gone: ``redis-a`` (the primary), ``redis-b`` (its replica) and ``redis-sentinel-0..2``. Every
pod is ``<hostname>.redis`` under one headless Service (``publishNotReadyAddresses``), so each has a DNS
name for its lifetime; the replicas announce that name (``replica-announce-ip``), the Sentinels resolve and
announce names (``sentinel resolve-hostnames yes``, ``announce-hostnames yes``), and the address a client
gets from a Sentinel is a name, as in the usual production set-ups. Passwords: one for the primary
(``requirepass``/``masterauth``/``auth-pass``), one for the Sentinels (their ``requirepass``), from a
Secret in each namespace.

The chart is installed (in ``humanizer-sentinel``, restricted) with ``redis.enabled=false`` and
``externalRedis.sentinel`` naming the three Sentinels and both password Secrets, the fake model at 1.5 s
per reply, and the node tier's shortened recovery settings (``FAST_RECOVERY``; at most 2 workers). A
600-chunk job is submitted; once it runs, the primary pod is deleted with ``--grace-period=0 --force``.
Asserted: the job still ran after the kill and after the failover; every Sentinel names the replica as
the primary, which says it is one; the job Succeeded, every chunk once and in order, within a bound; no
Humanizer container restarted (a failover costs the clients a reconnect, not a restart).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from tests.cluster.helpers import Kubectl, KubeTool, wait_until

from .release import REDIS_IMAGE_REPOSITORY, REDIS_IMAGE_TAG, Release, install_release
from .test_scale_and_faults import FAST_RECOVERY, LATENCY, Job

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

REDIS_NS = "redis-ha"
NAMESPACE = RELEASE = "humanizer-sentinel"
SERVICE = "redis"  # the headless Service every Redis pod is a subdomain of
MASTER = "mymaster"
PRIMARY, REPLICA = "redis-a", "redis-b"
SENTINELS = [f"redis-sentinel-{i}" for i in range(3)]
SENTINEL_PORT = 26379
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 10_000
PART_OF = {"app.kubernetes.io/part-of": "redis-ha"}
CHUNKS = 600


def fqdn(pod: str) -> str:
    return f"{pod}.{SERVICE}.{REDIS_NS}.svc.cluster.local"


# ---- the Redis set -------------------------------------------------------------------------------------

def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": key}}}


def _pod(name: str, component: str, script: str, port: int, cli_auth_key: str) -> dict[str, Any]:
    """A restricted-compliant pod of the Redis image running ``sh -c script``, its config under /data."""
    ping = f'[ "$(redis-cli -p {port} ping)" = PONG ]'
    container = {
        "name": component, "image": f"{REDIS_IMAGE_REPOSITORY}:{REDIS_IMAGE_TAG}", "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "env": [_secret_env("REDIS_PASSWORD", "password"), _secret_env("SENTINEL_PASSWORD", "sentinel-password"),
                _secret_env("REDISCLI_AUTH", cli_auth_key),  # redis-cli in probes and `kubectl exec`
                {"name": "ANNOUNCE", "value": fqdn(name)}],
        "ports": [{"containerPort": port, "name": component}],
        "readinessProbe": {"exec": {"command": ["sh", "-c", ping]}, "periodSeconds": 1, "timeoutSeconds": 2},
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }  # fmt: skip
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {**PART_OF, "app.kubernetes.io/component": component}},
        "spec": {
            "hostname": name, "subdomain": SERVICE, "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 5, "containers": [container],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }  # fmt: skip


def redis_pod(name: str, replica_of: str | None = None) -> dict[str, Any]:
    """redis-server with a config file of its own (Sentinel rewrites it on a failover), announcing its name."""
    lines = ["port 6379", "dir /data", 'save ""', "appendonly no", "requirepass $REDIS_PASSWORD",
             "masterauth $REDIS_PASSWORD", "replica-announce-ip $ANNOUNCE"]  # fmt: skip
    if replica_of:
        lines.append(f"replicaof {fqdn(replica_of)} 6379")
    conf = "\n".join(lines)
    script = f"cat > /data/redis.conf <<EOF\n{conf}\nEOF\nexec redis-server /data/redis.conf\n"
    return _pod(name, "redis", script, 6379, "password")


def sentinel_pod(name: str) -> dict[str, Any]:
    """redis-server --sentinel monitoring the primary by name (waits, bounded, until the name resolves)."""
    m = MASTER
    conf = "\n".join([
        f"port {SENTINEL_PORT}", "dir /data",
        # before `monitor`: the primary is given by name
        "sentinel resolve-hostnames yes", "sentinel announce-hostnames yes",
        "sentinel announce-ip $ANNOUNCE", f"sentinel announce-port {SENTINEL_PORT}",
        f"sentinel monitor {m} {fqdn(PRIMARY)} 6379 2",
        f"sentinel down-after-milliseconds {m} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {m} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {m} 1",
        f"sentinel auth-pass {m} $REDIS_PASSWORD",
        "requirepass $SENTINEL_PASSWORD",
    ])  # fmt: skip
    script = (
        f"for i in $(seq 60); do getent hosts {fqdn(PRIMARY)} >/dev/null && break; sleep 1; done\n"
        f"cat > /data/sentinel.conf <<EOF\n{conf}\nEOF\nexec redis-server /data/sentinel.conf --sentinel\n"
    )
    return _pod(name, "sentinel", script, SENTINEL_PORT, "sentinel-password")


def headless_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "labels": PART_OF},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": PART_OF,
                 "ports": [{"name": "redis", "port": 6379}, {"name": "sentinel", "port": SENTINEL_PORT}]},
    }  # fmt: skip


def auth_secret(password: str, sentinel_password: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-auth"}, "type": "Opaque",
            "stringData": {"password": password, "sentinel-password": sentinel_password}}  # fmt: skip


# ---- asking the Redis set ------------------------------------------------------------------------------

class RedisSet:
    """The Redis pods, asked through ``kubectl exec ... redis-cli`` (authenticated by REDISCLI_AUTH)."""

    def __init__(self, kubectl: Kubectl) -> None:
        self.kubectl = kubectl

    def cli(self, pod: str, *args: str, port: int = 6379) -> str:
        proc = self.kubectl("exec", pod, "-n", REDIS_NS, "--", "redis-cli", "-p", str(port), *args,
                            check=False, timeout=30)  # fmt: skip
        return proc.stdout if proc.returncode == 0 else ""

    def info(self, pod: str, section: str, port: int = 6379) -> dict[str, str]:
        out = self.cli(pod, "info", section, port=port)
        return dict(line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith("#"))

    def master_by(self, sentinel: str) -> str:
        """The primary's address as this Sentinel names it (``host:port``; empty if it did not answer)."""
        out = self.cli(sentinel, "sentinel", "get-master-addr-by-name", MASTER, port=SENTINEL_PORT).split()
        return ":".join(out) if len(out) == 2 else ""

    def sentinel_view(self, sentinel: str) -> str:
        """``master0:name=mymaster,status=ok,address=...,slaves=1,sentinels=3`` of INFO sentinel."""
        return self.info(sentinel, "sentinel", port=SENTINEL_PORT).get("master0", "").strip()

    def sees_whole_set(self, sentinel: str) -> bool:
        """The primary up, its one replica and the two other Sentinels known to this Sentinel."""
        view = self.sentinel_view(sentinel)
        return "status=ok" in view and "slaves=1,sentinels=3" in view

    def logs(self, pods: list[str]) -> str:
        return "\n".join(
            f"--- {p} ---\n{self.kubectl('logs', p, '-n', REDIS_NS, '--tail=25', check=False).stdout[-2500:]}"
            for p in pods
        )


def start_redis_set(kubectl: Kubectl) -> tuple[RedisSet, str, str]:
    """The namespace, the primary and replica (in sync), then the Sentinels (each seeing the whole set)."""
    password, sentinel_password = secrets.token_hex(16), secrets.token_hex(16)
    kubectl("create", "namespace", REDIS_NS)
    kubectl("label", "namespace", REDIS_NS, "pod-security.kubernetes.io/enforce=restricted")
    kubectl.apply([auth_secret(password, sentinel_password), headless_service(), redis_pod(PRIMARY),
                   redis_pod(REPLICA, replica_of=PRIMARY)], namespace=REDIS_NS)  # fmt: skip
    rs = RedisSet(kubectl)
    kubectl("wait", "-n", REDIS_NS, "--for=condition=Ready", f"pod/{PRIMARY}", f"pod/{REPLICA}", "--timeout=120s",
            timeout=130)  # fmt: skip
    try:
        wait_until(lambda: rs.info(REPLICA, "replication").get("master_link_status", "").strip() == "up", 90,
                   f"{REPLICA} in sync with {fqdn(PRIMARY)}", interval=1)  # fmt: skip
        kubectl.apply([sentinel_pod(s) for s in SENTINELS], namespace=REDIS_NS)
        kubectl("wait", "-n", REDIS_NS, "--for=condition=Ready", *(f"pod/{s}" for s in SENTINELS),
                "--timeout=120s", timeout=130)  # fmt: skip
        for s in SENTINELS:  # every Sentinel knows the replica and the two others: a failover can be agreed on
            wait_until(partial(rs.sees_whole_set, s), 90, f"{s} to see the replica and the other Sentinels",
                       interval=1)  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{kubectl('get', 'pods', '-n', REDIS_NS, '-o', 'wide').stdout}\n"
                             f"{rs.logs([PRIMARY, REPLICA, *SENTINELS])}") from None  # fmt: skip
    return rs, password, sentinel_password


# ---- the release ---------------------------------------------------------------------------------------

SENTINEL_VALUES = [
    "--set", "redis.enabled=false",
    *(arg for i, s in enumerate(SENTINELS) for arg in ("--set", f"externalRedis.sentinel.hosts[{i}]={fqdn(s)}:"
                                                       f"{SENTINEL_PORT}")),
    "--set", f"externalRedis.sentinel.masterName={MASTER}",
    "--set", "externalRedis.sentinel.passwordSecret.name=redis-auth",
    "--set", "externalRedis.sentinel.passwordSecret.key=password",
    "--set", "externalRedis.sentinel.sentinelPasswordSecret.name=redis-auth",
    "--set", "externalRedis.sentinel.sentinelPasswordSecret.key=sentinel-password",
    # the node has 2 CPUs and five Redis pods besides: one API pod, at most 2 workers (16 calls in flight each)
    *FAST_RECOVERY, "--set", "operator.autoscaler.maxReplicas=2", "--set", "api.replicas=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def sentinel_release(kubectl: Kubectl, helm: KubeTool) -> Iterator[tuple[Release, RedisSet]]:
    """The Redis set, then the chart pointed at its Sentinels; both namespaces deleted at the end."""
    try:
        rs, password, sentinel_password = start_redis_set(kubectl)
        rel = install_release(kubectl, helm, [], Release.app_image, namespace=NAMESPACE, name=RELEASE,
                              values=SENTINEL_VALUES, objects=[auth_secret(password, sentinel_password)],
                              latency=LATENCY)  # fmt: skip
        yield rel, rs
    finally:
        helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s", check=False, timeout=150)
        kubectl("delete", "namespace", NAMESPACE, REDIS_NS, "--ignore-not-found", "--wait=true", "--timeout=120s",
                timeout=150)  # fmt: skip


def restarts(rel: Release) -> dict[str, int]:
    return {p["metadata"]["name"]: sum(int(c.get("restartCount", 0)) for c in p["status"].get("containerStatuses", []))
            for p in rel.get("pods")["items"]}  # fmt: skip


def restart_report(rel: Release, pod: str) -> str:
    """Why a pod's containers restarted: their last termination, the pod's events, the previous logs."""
    status = rel.get("pod", pod)
    created = status["metadata"]["creationTimestamp"]
    last = [(c["name"], c.get("lastState", {}).get("terminated")) for c in status["status"]["containerStatuses"]]
    events = rel.k("get", "events", "--field-selector", f"involvedObject.name={pod}", check=False)
    logs = rel.kubectl("logs", pod, "-n", rel.namespace, "--previous", "--tail=3000", "--all-containers",
                       check=False)  # fmt: skip
    routine = ('"logger": "httpx2"', "succeeded in", '"event": "batch.done"')  # a chunk's HTTP call, a batch done
    lines = [line for line in logs.stdout.splitlines() if not any(r in line for r in routine)]
    return (f"--- {pod} (created {created}): last terminated {last}\n{events}\n"
            "previous logs (without HTTP calls and finished batches):\n" + "\n".join(lines[-60:])[-8000:]
            + logs.stderr[-500:])


def test_primary_pod_killed_mid_job_sentinel_promotes_the_replica(
    sentinel_release: tuple[Release, RedisSet],
) -> None:
    rel, rs = sentinel_release
    old, new = f"{fqdn(PRIMARY)}:6379", f"{fqdn(REPLICA)}:6379"
    assert {rs.master_by(s) for s in SENTINELS} == {old}, "the Sentinels do not all name the first primary"
    restarts_before = restarts(rel)
    job = Job(rel, CHUNKS)
    try:
        job.wait_running(at_least=32)
        link = rs.info(REPLICA, "replication").get("master_link_status", "").strip()
        assert link == "up", f"{REPLICA} was not in sync before the kill: master_link_status {link!r}"
        at_kill = int(job.progress().get("done") or 0)
        t0 = time.monotonic()
        print(f"\nkilling {PRIMARY} at {time.strftime('%H:%M:%S', time.gmtime())} UTC")
        rel.kubectl("delete", "pod", PRIMARY, "-n", REDIS_NS, "--grace-period=0", "--force")
        job.assert_still_running("the primary pod was deleted")

        named: dict[str, str] = {}

        def promoted() -> bool:
            named.update({s: rs.master_by(s) for s in SENTINELS})
            return set(named.values()) == {new} and rs.info(REPLICA, "replication").get("role", "").strip() == "master"

        try:
            wait_until(promoted, 60, f"every Sentinel to name {new} as the primary, and it to be one", interval=0.3)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; they name {named}\n{rs.logs(SENTINELS)}") from None
        promoted_s = time.monotonic() - t0
        job.assert_still_running("the replica was promoted")
        after = int(job.progress().get("done") or 0)
        gone = rel.kubectl("get", "pod", PRIMARY, "-n", REDIS_NS, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, f"{PRIMARY} is still there: {gone.stdout}"

        try:
            job.finish(timeout=300)  # Succeeded, each marker once, in order
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{rel.logs('worker')}\n{rs.logs(SENTINELS[:1])}") from None
        done_s = time.monotonic() - t0
        print(f"\nFIGURE sentinel failover: primary pod force-deleted at {at_kill}/{CHUNKS} chunks done; replica "
              f"promoted (all 3 Sentinels agree) {promoted_s:.1f}s after the kill ({after} done at that read); "
              f"job Succeeded {done_s:.1f}s after the kill, {CHUNKS}/{CHUNKS} chunks once, in order")
        rel.wait_all_ready(timeout=120)
        restarted = {p: n for p, n in restarts(rel).items() if n > restarts_before.get(p, 0)}
        assert not restarted, f"Humanizer containers restarted over the failover: {restarted}\n" + "\n".join(
            restart_report(rel, pod) for pod in restarted)
    finally:
        job.delete()
