"""Cluster tier fixtures: a real kube-apiserver/etcd/controller-manager/scheduler + kwok on loopback.

* ``cluster`` (session): starts the control plane (tools/cluster/controlplane.py) under a temporary
  directory, or reuses a running one when ``KUBECONFIG`` is set (e.g. after ``make cluster-up`` and
  ``export KUBECONFIG=...``). ``HUMANIZER_CLUSTER_FRESH=1`` ignores ``KUBECONFIG``. Reused clusters
  must be on loopback unless ``HUMANIZER_CLUSTER_ALLOW_REMOTE=1`` (the tests create cluster-scoped
  objects such as CRDs).
* ``api_client`` / ``core_v1`` / ``apps_v1``: kubernetes python clients for the cluster.
* ``namespace`` (function): a fresh namespace (with its default ServiceAccount), deleted afterwards.
* ``kubectl`` / ``helm``: run the cached kubectl / helm v3 against the cluster.

If the binaries are missing or the control plane cannot start, the fixtures raise: tests fail with
the reason, they never skip.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "cluster"))

from controlplane import FAKE_NODE_ANNOTATION, Binaries, ControlPlane  # noqa: E402

from .helpers import Kubectl, KubeTool, wait_until  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Cluster:
    """What tests need to talk to the cluster."""

    kubeconfig: Path
    kubectl_path: Path
    binaries: Binaries
    control_plane: ControlPlane | None  # None when an existing cluster was reused

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))


def _reuse_kubeconfig() -> Path | None:
    if os.environ.get("HUMANIZER_CLUSTER_FRESH") == "1":
        return None
    value = os.environ.get("KUBECONFIG")
    if not value:
        return None
    path = Path(value.split(os.pathsep)[0])
    if not path.is_file():
        raise RuntimeError(f"KUBECONFIG={value} does not exist (unset it to start a fresh control plane)")
    if os.environ.get("HUMANIZER_CLUSTER_ALLOW_REMOTE") != "1":
        loaded = yaml.safe_load(path.read_text())
        current = loaded.get("current-context")
        ctx = next(c["context"] for c in loaded["contexts"] if c["name"] == current)
        server = next(c["cluster"]["server"] for c in loaded["clusters"] if c["name"] == ctx["cluster"])
        if urlparse(server).hostname not in LOOPBACK:
            raise RuntimeError(
                f"KUBECONFIG points at {server}, not a loopback test cluster; unset KUBECONFIG, "
                "set HUMANIZER_CLUSTER_FRESH=1, or HUMANIZER_CLUSTER_ALLOW_REMOTE=1 if you mean it"
            )
    return path


def _require_kwok_nodes(kubeconfig: Path) -> None:
    """A reused cluster must be one of ours: pods only become Running on kwok-managed nodes."""
    key, value = FAKE_NODE_ANNOTATION
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        nodes = client.CoreV1Api(api).list_node(_request_timeout=10).items
    if not any((n.metadata.annotations or {}).get(key) == value for n in nodes):
        raise RuntimeError(
            f"the cluster in KUBECONFIG={kubeconfig} has no node annotated {key}={value} (not started by "
            "`make cluster-up`?); unset KUBECONFIG or set HUMANIZER_CLUSTER_FRESH=1"
        )


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    binaries = Binaries.from_cache()
    binaries.check()  # raises with "run make cluster-tools" when the cache is empty
    reused = _reuse_kubeconfig()
    if reused is not None:
        _require_kwok_nodes(reused)
        yield Cluster(reused, binaries.kubectl, binaries, None)
        return
    workdir = tmp_path_factory.mktemp("controlplane")
    cp = ControlPlane(workdir, nodes=int(os.environ.get("CLUSTER_NODES", "1")), binaries=binaries)
    cp.start()
    try:
        yield Cluster(cp.kubeconfig, binaries.kubectl, binaries, cp)
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> Iterator[client.ApiClient]:
    api = cluster.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def core_v1(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps_v1(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    return Kubectl(cluster.kubectl_path, cluster.kubeconfig)


@pytest.fixture(scope="session")
def helm(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> KubeTool:
    """helm v3 against the cluster, with its cache/config/data dirs isolated from the user's."""
    home = tmp_path_factory.mktemp("helm")
    env = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    return KubeTool(cluster.binaries.helm, cluster.kubeconfig, env)


@pytest.fixture
def namespace(core_v1: client.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new namespace named after the test; waits for its default ServiceAccount; deleted after."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-")  # parametrized ids too
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    core_v1.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"humanizer-test": "1"}))
    )

    def has_default_sa() -> bool:
        try:
            core_v1.read_namespaced_service_account("default", name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    wait_until(has_default_sa, 30, f"ServiceAccount default in namespace {name}")
    try:
        yield name
    finally:
        try:
            core_v1.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
