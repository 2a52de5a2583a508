"""Tests of the cluster tier itself: CRD schema + CEL, RBAC, kwok + pod harness, helm against the API."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .helpers import Kubectl, KubeTool, wait_until
from .pod_harness import PodHarness, expand, humanizer_command

pytestmark = pytest.mark.cluster

GROUP = "tier.humanizer.test"
CRD_NAME = f"widgets.{GROUP}"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["replicas", "mode"],
                                "properties": {
                                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "mode": {"type": "string", "enum": ["fast", "careful"]},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "!has(self.minReplicas) || self.minReplicas <= self.replicas",
                                        "message": "minReplicas must not exceed replicas",
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def _widget(name: str, **spec: object) -> dict:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def widget_crd(kubectl: Kubectl, api_client: client.ApiClient) -> Iterator[str]:
    """The test CRD, applied and Established; deleted afterwards (it is cluster-scoped)."""
    kubectl.apply(CRD)
    ext = client.ApiextensionsV1Api(api_client)
    name = CRD_NAME

    def established() -> bool:
        conds = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_until(established, 30, "CRD Established")
    try:
        yield name
    finally:
        kubectl("delete", "crd", name, "--ignore-not-found", "--wait=false")


def test_crd_schema_and_cel_rules_are_enforced(
    widget_crd: str, kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)

    def create(body: dict) -> dict:
        return custom.create_namespaced_custom_object(GROUP, "v1", namespace, "widgets", body)

    # openAPI schema: out-of-range integer, bad enum, missing required field
    cases = [
        (_widget("too-many", replicas=11, mode="fast"), "spec.replicas"),
        (_widget("bad-mode", replicas=2, mode="sloppy"), "spec.mode"),
        (_widget("no-mode", replicas=2), "spec.mode"),
        # CEL rule
        (_widget("cel", replicas=2, minReplicas=3, mode="fast"), "minReplicas must not exceed replicas"),
    ]
    for body, expected in cases:
        with pytest.raises(ApiException) as err:
            create(body)
        assert err.value.status == 422, err.value.body
        assert expected in err.value.body, err.value.body

    created = create(_widget("ok", replicas=3, minReplicas=1, mode="careful"))
    assert created["metadata"]["uid"]
    # the CEL rule also guards updates
    patch = {"spec": {"minReplicas": 5}}
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "ok", patch)
    assert "minReplicas must not exceed replicas" in err.value.body
    # kubectl sees the same rejection (server-side)
    bad = kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(_widget("k", replicas=0, mode="x")), check=False
    )
    assert bad.returncode != 0 and "spec.replicas" in bad.stderr, bad.stderr


def _bearer_client(api_client: client.ApiClient, token: str) -> client.ApiClient:
    base = api_client.configuration
    cfg = client.Configuration()
    cfg.host = base.host
    cfg.ssl_ca_cert = base.ssl_ca_cert
    cfg.verify_ssl = True
    cfg.api_key = {"authorization": f"Bearer {token}"}  # prefix included: works for old and new clients
    return client.ApiClient(cfg)


def test_rbac_denies_what_the_role_does_not_grant(
    kubectl: Kubectl, core_v1: client.CoreV1Api, api_client: client.ApiClient, namespace: str
) -> None:
    kubectl.apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader-pods"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        ],
        namespace=namespace,
    )
    sa = f"system:serviceaccount:{namespace}:reader"

    # 1. impersonation through kubectl
    assert kubectl("auth", "can-i", "list", "pods", "-n", namespace, f"--as={sa}").stdout.strip() == "yes"
    denied = kubectl("auth", "can-i", "list", "secrets", "-n", namespace, f"--as={sa}", check=False)
    assert denied.stdout.strip() == "no"
    forbidden = kubectl("get", "secrets", "-n", namespace, f"--as={sa}", check=False)
    assert forbidden.returncode != 0 and "forbidden" in forbidden.stderr.lower(), forbidden.stderr

    # 2. a real token from the TokenRequest API (signed with the service-account key)
    token = core_v1.create_namespaced_service_account_token(
        "reader", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    ).status.token
    with _bearer_client(api_client, token) as sa_client:
        sa_core = client.CoreV1Api(sa_client)
        sa_core.list_namespaced_pod(namespace)  # granted
        for call in (
            lambda: sa_core.list_namespaced_secret(namespace),
            lambda: sa_core.list_namespaced_pod("default"),
            lambda: sa_core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nope"))
            ),
        ):
            with pytest.raises(ApiException) as err:
                call()
            assert err.value.status == 403, err.value.body
            assert sa in err.value.body


# The "container": writes what it sees to $OUT_DIR/$POD_NAME.json, then idles until SIGTERM.
ECHO_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    out = os.path.join(os.environ["OUT_DIR"], os.environ["POD_NAME"] + ".json")
    keys = ["POD_NAME", "POD_NAMESPACE", "GREETING", "TOKEN", "MSG", "HOSTNAME"]
    with open(out + ".tmp", "w") as f:
        json.dump({**{k: os.environ.get(k) for k in keys}, "pid": os.getpid()}, f)
    os.replace(out + ".tmp", out)
    while True:
        time.sleep(3600)
    """
)


def _deployment(out_dir: Path) -> dict:
    field = lambda path: {"valueFrom": {"fieldRef": {"fieldPath": path}}}  # noqa: E731
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "echo",
                            "image": "local/echo:never-pulled",
                            "command": ["python", "-c", ECHO_SCRIPT],
                            "env": [
                                {"name": "POD_NAME", **field("metadata.name")},
                                {"name": "POD_NAMESPACE", **field("metadata.namespace")},
                                {"name": "OUT_DIR", "value": str(out_dir)},
                                {"name": "MSG", "value": "hello from $(POD_NAME)"},
                                {
                                    "name": "GREETING",
                                    "valueFrom": {"configMapKeyRef": {"name": "echo-config", "key": "greeting"}},
                                },
                                {
                                    "name": "TOKEN",
                                    "valueFrom": {"secretKeyRef": {"name": "echo-secret", "key": "token"}},
                                },
                            ],
                        }
                    ],
                },
            },
        },
    }


def _running_pods(core_v1: client.CoreV1Api, namespace: str) -> set[str]:
    pods = core_v1.list_namespaced_pod(namespace, label_selector="app=echo").items
    return {p.metadata.name for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None}


def test_deployment_scaling_drives_local_processes(
    kubectl: Kubectl, core_v1: client.CoreV1Api, apps_v1: client.AppsV1Api, namespace: str, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    kubectl.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "echo-config"},
                "data": {"greeting": "hi"},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "echo-secret"},
                "stringData": {"token": "s3cr3t"},
            },
            _deployment(out_dir),
        ],
        namespace=namespace,
    )
    with PodHarness(core_v1, namespace, "app=echo", log_dir=tmp_path / "logs", grace=5) as harness:
        wait_until(lambda: len(_running_pods(core_v1, namespace)) == 1, 60, "1 Running pod")
        harness.wait_for_alive(1, timeout=30)

        apps_v1.patch_namespaced_deployment_scale("echo", namespace, {"spec": {"replicas": 3}})
        wait_until(lambda: len(_running_pods(core_v1, namespace)) == 3, 60, "3 Running pods")
        harness.wait_for_alive(3, timeout=30)
        pods = _running_pods(core_v1, namespace)
        wait_until(lambda: len(list(out_dir.glob("*.json"))) == 3, 30, "3 processes to report")
        reports = {p.stem: json.loads(p.read_text()) for p in out_dir.glob("*.json")}
        assert set(reports) == pods
        procs = harness.processes()
        for pod, report in reports.items():
            assert report["POD_NAME"] == pod == report["HOSTNAME"]
            assert report["POD_NAMESPACE"] == namespace
            assert report["GREETING"] == "hi"
            assert report["TOKEN"] == "s3cr3t"
            assert report["MSG"] == f"hello from {pod}"
            assert report["pid"] == procs[pod].proc.pid
            assert procs[pod].argv[0] == sys.executable

        apps_v1.patch_namespaced_deployment_scale("echo", namespace, {"spec": {"replicas": 1}})
        harness.wait_for_alive(1, timeout=60)
        wait_until(lambda: len(_running_pods(core_v1, namespace)) == 1, 60, "1 Running pod after scale-down")
        (survivor,) = _running_pods(core_v1, namespace)
        assert [p for p, proc in harness.processes().items() if proc.alive] == [survivor]
        stopped = [proc for pod, proc in procs.items() if pod != survivor]
        assert all(proc.proc.poll() is not None for proc in stopped)
        assert not harness.errors, harness.errors
    assert harness.alive_count() == 0
    assert all(proc.proc.poll() is not None for proc in procs.values())


def test_command_translation_and_expansion() -> None:
    assert humanizer_command(["humanizer", "worker", "--concurrency", "2"]) == [
        sys.executable, "-m", "humanizer.cli", "worker", "--concurrency", "2",
    ]  # fmt: skip
    assert humanizer_command(["python3", "-c", "pass"]) == [sys.executable, "-c", "pass"]
    assert humanizer_command(["/bin/true"]) == ["/bin/true"]
    assert expand("$(A)-$(B)-$$(A)", {"A": "x"}) == "x-$(B)-$(A)"


CHART_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  labels: {app: {{ .Release.Name }}-web}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}-web}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}-web}
    spec:
      containers:
        - name: web
          image: local/web:never-pulled
          command: ["sleep", "infinity"]
"""


def test_helm_install_upgrade_uninstall(
    helm: KubeTool, core_v1: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicas: 2\n")
    (chart / "templates" / "deployment.yaml").write_text(CHART_DEPLOYMENT)

    def running() -> int:
        pods = core_v1.list_namespaced_pod(namespace, label_selector="app=demo-web").items
        return sum(1 for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None)

    helm("install", "demo", str(chart), "-n", namespace, "--wait", "--timeout", "60s", timeout=90)
    assert running() == 2
    helm("upgrade", "demo", str(chart), "-n", namespace, "--set", "replicas=3", "--wait", "--timeout", "60s")
    assert running() == 3
    assert "deployed" in helm("status", "demo", "-n", namespace).stdout
    helm("uninstall", "demo", "-n", namespace, "--wait", "--timeout", "60s", timeout=90)
    wait_until(lambda: not core_v1.list_namespaced_pod(namespace).items, 60, "pods garbage-collected")
