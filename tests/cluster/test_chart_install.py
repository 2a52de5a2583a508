"""The Helm chart installed into the cluster tier and run for real.

``helm install`` of charts/humanizer with an external (local) Redis and the fake OpenAI server; the
chart's OWN operator and worker Deployments' pods are run as local processes by the pod harness (one
harness per Deployment), with the command, args, ConfigMap, Secrets and fieldRefs the chart rendered.
The example HumanizeJob goes to Succeeded, ``helm upgrade`` rolls the workers onto the new settings and
``helm uninstall`` leaves nothing of the release behind but the (cluster-scoped) CRD.

A second test server-side dry-runs every object ``helm template`` renders with the default values into
a namespace enforcing the ``restricted`` Pod Security level (schema validation by the real API server,
Pod Security admission on the pod templates).

What differs from a real pod, and why:

* The operator process cannot use in-cluster config (no mounted token, no KUBERNETES_SERVICE_HOST), so
  it gets ``KUBECONFIG`` — a kubeconfig holding a token of the chart's own operator ServiceAccount
  (``kubectl create token``), so the chart's RBAC is what the operator really runs with.
* ``--liveness=http://0.0.0.0:<healthPort>/healthz`` is rewritten to a free loopback port (many
  processes share this machine; loopback only).
* ``MONITORING_PROMETHEUS_PORT=0`` for every process: pods each have their own network namespace, local
  processes do not (several workers would otherwise contend for 9808).
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from humanizer.local.redis_server import free_port

from .conftest import Cluster
from .helpers import Kubectl, KubeTool, wait_until
from .operator_support import EXAMPLES, GROUP, PLURAL, backend, get_hj, load_example, wait_phase
from .pod_harness import PodHarness, humanizer_command

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "humanizer"
# Unique per run: the release's ClusterRoles/Bindings are cluster-scoped (a reused cluster may hold another).
RELEASE = f"hzc-{uuid.uuid4().hex[:5]}"
FULLNAME = f"{RELEASE}-humanizer"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"


def selector(component: str) -> str:
    return f"{INSTANCE},app.kubernetes.io/component={component}"


class OperatorTranslate:
    """Container command → local argv for the operator pod: ``humanizer-operator ...`` →
    ``python -m humanizer_operator ...`` with the liveness endpoint moved to a free loopback port."""

    def __init__(self) -> None:
        self.ports: list[int] = []

    def __call__(self, argv: list[str]) -> list[str]:
        if argv and Path(argv[0]).name == "humanizer-operator":
            port = free_port()
            self.ports.append(port)
            rest = [f"--liveness=http://127.0.0.1:{port}/healthz" if a.startswith("--liveness=") else a
                    for a in argv[1:]]
            return [sys.executable, "-m", "humanizer_operator", *rest]
        return humanizer_command(argv)

    def healthy(self) -> bool:
        if not self.ports:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[-1]}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


def service_account_kubeconfig(cluster: Cluster, kubectl: Kubectl, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig for the test cluster that authenticates as ServiceAccount ``sa`` (a bound token)."""
    token = kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    ctx_name = admin["current-context"]
    ctx = next(c["context"] for c in admin["contexts"] if c["name"] == ctx_name)
    cl = next(c for c in admin["clusters"] if c["name"] == ctx["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cl],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": cl["name"], "user": sa, "namespace": namespace}}],
        "current-context": sa,
    }))
    return path


def wait_rollout(kubectl: Kubectl, namespace: str, name: str, timeout: int = 60) -> None:
    kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, f"--timeout={timeout}s",
            timeout=timeout + 15)


def leftovers(api: client.ApiClient, namespace: str) -> dict[str, list[str]]:
    """Objects left in ``namespace`` that an uninstalled release could have created (defaults excluded)."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    rbac, policy, net = client.RbacAuthorizationV1Api(api), client.PolicyV1Api(api), client.NetworkingV1Api(api)
    listers: dict[str, Callable[[], Any]] = {
        "Deployment": lambda: apps.list_namespaced_deployment(namespace),
        "ReplicaSet": lambda: apps.list_namespaced_replica_set(namespace),
        "StatefulSet": lambda: apps.list_namespaced_stateful_set(namespace),
        "Pod": lambda: core.list_namespaced_pod(namespace),
        "Service": lambda: core.list_namespaced_service(namespace),
        "ConfigMap": lambda: core.list_namespaced_config_map(namespace),
        "Secret": lambda: core.list_namespaced_secret(namespace),
        "ServiceAccount": lambda: core.list_namespaced_service_account(namespace),
        "Role": lambda: rbac.list_namespaced_role(namespace),
        "RoleBinding": lambda: rbac.list_namespaced_role_binding(namespace),
        "PodDisruptionBudget": lambda: policy.list_namespaced_pod_disruption_budget(namespace),
        "NetworkPolicy": lambda: net.list_namespaced_network_policy(namespace),
        "Ingress": lambda: net.list_namespaced_ingress(namespace),
        "PersistentVolumeClaim": lambda: core.list_namespaced_persistent_volume_claim(namespace),
    }
    defaults = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
    out: dict[str, list[str]] = {}
    for kind, lister in listers.items():
        names = [o.metadata.name for o in lister().items if (kind, o.metadata.name) not in defaults]
        if names:
            out[kind] = names
    cluster_scoped = {
        "ClusterRole": rbac.list_cluster_role(label_selector=INSTANCE).items,
        "ClusterRoleBinding": rbac.list_cluster_role_binding(label_selector=INSTANCE).items,
    }
    for kind, items in cluster_scoped.items():
        names = [o.metadata.name for o in items]
        if names:
            out[kind] = names
    return out


def test_helm_install_runs_upgrade_and_uninstall(
    cluster: Cluster, api_client: client.ApiClient, core_v1: client.CoreV1Api, apps_v1: client.AppsV1Api,
    kubectl: Kubectl, helm: KubeTool, namespace: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    def cleanup() -> None:
        """After a failure: no finalizer may hold the namespace, no cluster-scoped object may stay."""
        names = kubectl("get", PLURAL, "-n", namespace, "-o", "name", check=False).stdout.split()
        for obj in names:
            kubectl("patch", obj, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                    check=False)
        helm("uninstall", RELEASE, "-n", namespace, "--ignore-not-found", "--timeout=30s", check=False, timeout=60)

    request.addfinalizer(cleanup)
    t0 = time.monotonic()
    laps: list[str] = []

    def lap(what: str) -> None:
        laps.append(f"{what} {time.monotonic() - t0:.1f}s")
    with backend(latency=0.05) as be:
        values = {
            "redis": {"enabled": False},
            "externalRedis": {"url": be.redis.url},
            "provider": {"name": "openai", "openai": {"baseUrl": be.fake.url, "apiKey": "test-key",
                                                      "model": "fake-model"}},
            "config": {"logFormat": "console", "extraEnv": {"HUMANIZER_CHUNK_CACHE_TTL_SECONDS": "0"}},
            "worker": {"concurrency": 2},
            "api": {"replicas": 1},
            # NetworkPolicies stay on: the API server stores them (nothing enforces them here).
        }
        lap("start")
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        out = helm("install", RELEASE, str(CHART), "-n", namespace, "-f", str(values_file),
                   "--wait", "--timeout=90s", timeout=120).stdout
        assert "STATUS: deployed" in out, out

        # the chart wired settings and secrets as expected (read back through the API)
        cm = core_v1.read_namespaced_config_map(f"{FULLNAME}-config", namespace).data
        assert cm["HUMANIZER_PROVIDER"] == "openai" and cm["OPENAI_BASE_URL"] == be.fake.url
        assert cm["CELERY_WORKER_CONCURRENCY"] == "2"
        worker_dep = f"{FULLNAME}-worker"
        assert apps_v1.read_namespaced_deployment(worker_dep, namespace).metadata.annotations[
            "humanizer.dev/autoscaled-by"] == f"{FULLNAME}-operator"

        lap("installed")
        sa_kubeconfig = service_account_kubeconfig(cluster, kubectl, namespace, f"{FULLNAME}-operator",
                                                   tmp_path / "operator-sa.kubeconfig")
        local_only = {"MONITORING_PROMETHEUS_PORT": "0"}
        op_translate = OperatorTranslate()
        workers = PodHarness(core_v1, namespace, selector("worker"), extra_env=local_only,
                             log_dir=tmp_path / "workers", grace=20)
        operator = PodHarness(core_v1, namespace, selector("operator"), translate=op_translate,
                              extra_env={**local_only, "KUBECONFIG": str(sa_kubeconfig)},
                              log_dir=tmp_path / "operator", grace=20)

        def operator_logs() -> str:
            return "\n".join(p.log_path.read_text(errors="replace")[-4000:]
                             for p in operator.processes().values())

        with workers, operator:
            workers.wait_for_alive(1, timeout=60)
            operator.wait_for_alive(1, timeout=60)
            (op_proc,) = operator.processes().values()
            assert op_proc.argv[:3] == [sys.executable, "-m", "humanizer_operator"]
            assert f"--namespace={namespace}" in op_proc.argv and "--standalone" in op_proc.argv
            assert op_proc.env["REDIS_URL"] == be.redis.url and op_proc.env["OPENAI_API_KEY"] == "test-key"
            assert op_proc.env["HUMANIZER_WORKER_DEPLOYMENT"] == worker_dep
            assert op_proc.env["POD_NAMESPACE"] == namespace
            (w_proc,) = workers.processes().values()
            assert w_proc.argv[:4] == [sys.executable, "-m", "humanizer.cli", "worker"]
            assert w_proc.env["CELERY_WORKER_CONCURRENCY"] == "2"
            wait_until(op_translate.healthy, 60, f"the operator's liveness endpoint\n{operator_logs()}",
                       interval=0.3)

            lap("processes up")
            # the example HumanizeJob, end to end through the chart's own processes
            (job,) = load_example("humanizejob-inline.yaml")
            name = job["metadata"]["name"]
            kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "humanizejob-inline.yaml"))
            try:
                status = wait_phase(api_client, namespace, name, {"Succeeded", "Failed"}, 90)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\noperator log:\n{operator_logs()}\nworker errors: {workers.errors}") \
                    from None
            assert status["phase"] == "Succeeded", status
            assert status["progress"]["done"] == status["progress"]["total"] > 0
            outputs = [status["outputRef"]["name"]]
            output = core_v1.read_namespaced_config_map(status["outputRef"]["name"], namespace)
            text = output.data["text"]
            assert text.strip() and text != job["spec"]["input"]["text"]
            assert "2.4" in text and "35 percent" in text
            (owner,) = output.metadata.owner_references
            assert owner.kind == "HumanizeJob" and owner.name == name
            table = kubectl("get", "hj", "-n", namespace).stdout
            header, row = table.splitlines()[:2]
            assert header.split()[:3] == ["NAME", "PHASE", "PROGRESS"], table
            assert row.split()[:3] == [name, "Succeeded", status["progress"]["summary"]], table
            assert int(be.fake.stats()["total"]) >= 1
            assert not workers.errors and not operator.errors, (workers.errors, operator.errors)

            lap("job done")
            # helm upgrade: new worker concurrency → ConfigMap + checksum → workers (and operator) roll
            replicas_before = apps_v1.read_namespaced_deployment(worker_dep, namespace).spec.replicas
            old_workers = set(workers.processes())
            helm("upgrade", RELEASE, str(CHART), "-n", namespace, "-f", str(values_file),
                 "--set", "worker.concurrency=3", "--wait", "--timeout=90s", timeout=120)
            assert core_v1.read_namespaced_config_map(f"{FULLNAME}-config", namespace).data[
                "CELERY_WORKER_CONCURRENCY"] == "3"
            wait_rollout(kubectl, namespace, worker_dep)
            wait_rollout(kubectl, namespace, f"{FULLNAME}-operator")

            def rolled() -> bool:
                procs = {n: p for n, p in workers.processes().items() if p.alive}
                return bool(procs) and not (set(procs) & old_workers) and all(
                    p.env["CELERY_WORKER_CONCURRENCY"] == "3" for p in procs.values())

            wait_until(rolled, 60, "worker processes of the upgraded pods (concurrency 3)")
            # autoscaled: the Deployment has no replicas in the chart, so the upgrade kept the size
            assert apps_v1.read_namespaced_deployment(worker_dep, namespace).spec.replicas == replicas_before
            operator.wait_for_alive(1, timeout=60)
            wait_until(op_translate.healthy, 60, f"the upgraded operator's liveness\n{operator_logs()}",
                       interval=0.3)

            lap("upgraded")
            # still works after the upgrade
            again = {**job, "metadata": {"name": "after-upgrade"}}
            kubectl.apply(again, namespace=namespace)
            status = wait_phase(api_client, namespace, "after-upgrade", {"Succeeded", "Failed"}, 90)
            assert status["phase"] == "Succeeded", (status, operator_logs())
            outputs.append(status["outputRef"]["name"])

            lap("job 2 done")
            # the operator ran on the chart's own RBAC: no request was refused
            assert "Forbidden" not in operator_logs(), operator_logs()

            # delete the jobs while the operator runs (no finalizer: nothing waits for it); the outputs go with them
            kubectl("delete", "hj", "--all", "-n", namespace, "--wait=true", "--timeout=60s", timeout=90)
            assert get_hj(api_client, namespace, name) is None

            def outputs_gone() -> bool:
                names = {c.metadata.name for c in core_v1.list_namespaced_config_map(namespace).items}
                return not names & set(outputs)

            wait_until(outputs_gone, 60, f"the output ConfigMaps {outputs} to be garbage-collected")

            lap("jobs deleted")
            helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout=60s", timeout=90)
            workers.wait_for_alive(0, timeout=60)
            operator.wait_for_alive(0, timeout=60)

    lap("uninstalled+harness stopped")
    left: dict[str, list[str]] = {}

    def nothing_left() -> bool:
        nonlocal left
        left = leftovers(api_client, namespace)
        return not left

    try:
        wait_until(nothing_left, 60, "the release's objects to disappear", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: left behind: {left}") from None
    assert helm("list", "-n", namespace, "-a", "-q").stdout.strip() == ""
    # the CRD is cluster-scoped and Helm never deletes it
    kubectl("get", "crd", f"{PLURAL}.{GROUP}")
    assert kubectl("get", PLURAL, "-n", namespace, "-o", "name").stdout.strip() == ""
    lap("nothing left")
    print("chart install/run/upgrade/uninstall:", ", ".join(laps))


POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def test_default_render_passes_server_dry_run_restricted(
    core_v1: client.CoreV1Api, kubectl: Kubectl, helm: KubeTool, namespace: str,
) -> None:
    """Every object of ``helm template`` (default values, CRD included) is accepted by the real API
    server in a namespace that enforces ``restricted`` Pod Security; the pod templates too, as Pods."""
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted",
    }}})
    rendered = helm("template", RELEASE, str(CHART), "-n", namespace, "--include-crds").stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "StatefulSet", "ConfigMap", "Secret", "Service",
            "ServiceAccount", "ClusterRole", "RoleBinding", "Role", "PodDisruptionBudget",
            "NetworkPolicy"} <= kinds, kinds
    assert all(d["metadata"].get("namespace", namespace) == namespace for d in docs
               if d["kind"] not in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"})

    res = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False, timeout=90)
    assert res.returncode == 0, f"server-side dry-run rejected the default render:\n{res.stderr}"
    applied = [ln for ln in res.stdout.splitlines() if "(server dry run)" in ln]
    assert len(applied) == len(docs), res.stdout
    assert "PodSecurity" not in res.stderr, res.stderr  # workload warnings: "would violate PodSecurity"

    # Pod Security enforcement applies to Pods (workloads only get warnings): dry-run each template as a Pod
    pods: list[dict[str, Any]] = []
    for d in docs:
        if d["kind"] in POD_TEMPLATE_KINDS:
            tmpl = d["spec"]["template"]
            spec = dict(tmpl["spec"])
            spec.pop("serviceAccountName", None)  # a dry-run created no ServiceAccount (irrelevant to PSA)
            claims = [c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates", [])]
            spec["volumes"] = [*spec.get("volumes", []), *({"name": c, "emptyDir": {}} for c in claims)]
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"{d['metadata']['name']}-probe".lower()[:63],
                                      "labels": tmpl["metadata"].get("labels", {})},
                         "spec": spec})
    assert len(pods) >= 4, [p["metadata"]["name"] for p in pods]  # api, worker, operator, redis
    res = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(pods),
                  check=False, timeout=60)
    assert res.returncode == 0 and "PodSecurity" not in res.stderr, res.stderr
    # and the namespace really enforces it: a privileged pod is refused
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}}
    res = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0 and re.search(r"violates PodSecurity", res.stderr), res.stderr

