"""Node tier fixtures: the cluster tier's control plane plus one real node running the project's image.

* ``node`` (session): tools/node/node.py's NodeCluster under a temporary directory, with the images of
  ``make image`` (the app, Redis from Debian, pause, CoreDNS) imported into its containerd. At the end
  it is stopped and the host must be as it was before (sysctls, iptables, interfaces, mounts): a
  difference fails the session. ``HUMANIZER_NODE_REUSE=1`` uses the running node of ``make node-up``
  instead (development; the release is installed afresh, so the namespace ``humanizer`` must not exist).
* ``kubectl`` / ``helm``: the cached binaries against it.
* ``release`` (session): the chart installed the way the README says (``helm install`` into a
  namespace that enforces the ``restricted`` Pod Security level, bundled Redis with persistence),
  changing only the image values, plus the fake OpenAI-compatible server as a pod behind a Service.

Nothing here skips: missing root, packages or binaries fail with the reason. ``make test`` skips the
whole tier only with HUMANIZER_SKIP_NODE_TIER=1, and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "node"))

from node import CURRENT, NodeCluster, default_images  # noqa: E402
from tests.cluster.helpers import Kubectl, KubeTool  # noqa: E402

from .release import NODE_IMAGE_VALUES, Release, install_release  # noqa: E402


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    if os.geteuid() != 0:
        raise RuntimeError("the node tier needs root; `make test` with HUMANIZER_SKIP_NODE_TIER=1 skips it")
    if os.environ.get("HUMANIZER_NODE_REUSE") == "1":
        # Development: the node of `make node-up` (its images as they were imported then); left running.
        if not CURRENT.exists():
            raise RuntimeError("HUMANIZER_NODE_REUSE=1 but no node tier runs (`make node-up`)")
        reused = NodeCluster(Path(CURRENT.read_text().strip()))
        reused.ports = dict(json.loads((reused.workdir / "state.json").read_text())["ports"])  # the API server's
        yield reused
        return
    images = default_images()
    # A short path: unix sockets under it must stay below 108 bytes.
    workdir = Path(f"/tmp/hz-node-{uuid.uuid4().hex[:6]}")
    workdir.mkdir()
    cluster = NodeCluster(workdir, images=images)
    cluster.start()
    try:
        yield cluster
    finally:
        memory = cluster.memory()
        print(f"\nFIGURE node tier RSS at teardown: {sum(memory.values()) / 2**20:.0f} MiB "
              + ", ".join(f"{k}={v / 2**20:.0f}" for k, v in memory.items()))
        snapshot = cluster.snapshot
        cluster.stop(remove=True)
        left = snapshot.diff() if snapshot is not None else ["no host snapshot was taken"]
        assert not left, f"the node tier left host changes behind: {left}"


@pytest.fixture(scope="session")
def kubectl(node: NodeCluster) -> Kubectl:
    return Kubectl(node.binaries.kubectl, node.kubeconfig)


@pytest.fixture(scope="session")
def helm(node: NodeCluster, tmp_path_factory: pytest.TempPathFactory) -> KubeTool:
    home = tmp_path_factory.mktemp("helm")
    env = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    return KubeTool(node.binaries.helm, node.kubeconfig, env)


@pytest.fixture(scope="session")
def release(
    node: NodeCluster, kubectl: Kubectl, helm: KubeTool, request: pytest.FixtureRequest
) -> Iterator[Release]:
    rel = install_release(kubectl, helm, NODE_IMAGE_VALUES, Release.app_image)
    yield rel
    if request.session.testsfailed:
        rel.dump_on_failure()


def pod_json(kubectl: Kubectl, namespace: str, name: str) -> dict:
    return dict(json.loads(kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout))


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload,no-any-return]
