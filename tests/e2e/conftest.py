"""The kind tier: skipped with its reason (also in the terminal summary) where it cannot run.

``release``: the chart installed into the kind cluster of ``HUMANIZER_E2E_CONTEXT`` the same way the
node tier installs it (tests/node/release.py), with the image ``make e2e-kind`` loaded
(``HUMANIZER_E2E_IMAGE``, default ``humanizer:dev``) and the official Redis image; uninstalled after.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import Kubectl, KubeTool
from tests.node.release import Release, install_release

from .kind_env import kubectl_path, unavailable_reason


class ContextTool(KubeTool):
    """kubectl / helm against one kube context of the user's kubeconfig."""

    def __init__(self, path: Path, kubeconfig: Path, flag: str, context: str) -> None:
        super().__init__(path, kubeconfig)
        self.prefix = [flag, context]

    def __call__(self, *args: str, **kw: Any) -> Any:
        return super().__call__(*self.prefix, *args, **kw)


class ContextKubectl(ContextTool, Kubectl):
    pass


@pytest.fixture(scope="session")
def release() -> Iterator[Release]:
    context = os.environ["HUMANIZER_E2E_CONTEXT"]
    kubeconfig = Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")
    kubectl = ContextKubectl(Path(kubectl_path() or "kubectl"), kubeconfig, "--context", context)
    helm = ContextTool(Path(os.environ.get("HELM", "helm")), kubeconfig, "--kube-context", context)
    image = os.environ.get("HUMANIZER_E2E_IMAGE", "humanizer:dev")
    repository, tag = image.rsplit(":", 1)
    kubectl("delete", "namespace", "humanizer", "--ignore-not-found", "--wait=true", "--timeout=120s", timeout=150)
    rel = install_release(kubectl, helm, ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
                                          "--set", "image.pullPolicy=IfNotPresent"], image)
    try:
        yield rel
    finally:
        helm("uninstall", rel.name, "-n", rel.namespace, "--wait", check=False, timeout=180)
        kubectl("delete", "namespace", rel.namespace, "--wait=false", check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if not any("tests/e2e/" in str(getattr(r, "nodeid", "")) or "tests/e2e/" in str(getattr(r, "location", ""))
               for r in skipped):
        return
    reason = unavailable_reason()
    if reason:
        terminalreporter.write_sep("-", "e2e (kind) tier skipped")
        terminalreporter.write_line(f"e2e: SKIPPED: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The module-level skip leaves pytest with no collected item (exit 5, "no tests collected"); when
    that is only because the kind tier cannot run here, the run is a clean skip: exit 0."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and unavailable_reason():
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = reporter.stats.get("skipped", []) if reporter is not None else []
        if any("tests/e2e/" in str(getattr(r, "nodeid", "")) for r in skipped):
            session.exitstatus = pytest.ExitCode.OK
