"""Teardown as a user does it, while HumanizeJobs still exist: ``helm uninstall``, then deleting the
namespace, completes within a minute and leaves nothing behind (runs last: the release is gone after).
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.cluster.helpers import wait_until

from .release import Release
from .test_scale_and_faults import document

pytestmark = [pytest.mark.node, pytest.mark.timeout(300)]


def test_uninstall_and_namespace_deletion_with_jobs_left(release: Release) -> None:
    rel = release
    for i, n in enumerate((300, 2)):
        body = {
            "apiVersion": "humanizer.dev/v1alpha1", "kind": "HumanizeJob", "metadata": {"name": f"left-{i}"},
            "spec": {"input": {"text": document(n, f"LEFT{i}")}, "chunking": {"maxTokens": 40}},
        }  # fmt: skip
        rel.kubectl("create", "-n", rel.namespace, "-f", "-", input=yaml.safe_dump(body))
    wait_until(lambda: (rel.hj("left-0").get("status") or {}).get("phase") == "Running", 60, "left-0 Running")
    cluster_scoped = [
        line for line in rel.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").stdout.split()
        if rel.name in line
    ]
    t0 = time.monotonic()
    rel.helm("uninstall", rel.name, "-n", rel.namespace, "--wait", "--timeout", "60s", timeout=90)
    rel.kubectl("delete", "namespace", rel.namespace, "--wait=true", "--timeout=60s", timeout=90)
    took = time.monotonic() - t0
    print(f"\nFIGURE helm uninstall + namespace deletion with 2 HumanizeJobs left: {took:.1f}s")
    assert took < 60, f"uninstall and namespace deletion took {took:.0f}s"
    gone = rel.kubectl("get", "namespace", rel.namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout
    left = [n for n in cluster_scoped
            if rel.kubectl("get", n, check=False).returncode == 0]  # fmt: skip
    assert not left, f"cluster-scoped objects of the release left behind: {left}"
    pvs = json.loads(rel.kubectl("get", "pv", "-o", "json").stdout)["items"]
    bound = [p["metadata"]["name"] for p in pvs
             if (p["spec"].get("claimRef") or {}).get("namespace") == rel.namespace
             and p["status"].get("phase") == "Bound"]  # fmt: skip
    assert not bound, f"volumes still bound to the deleted namespace: {bound}"
