"""Whether the kind tier can run here, and how to reach it.

The e2e tier runs against a kind cluster with the real image and the chart installed by
``make e2e-kind`` (release ``humanizer`` in namespace ``humanizer``, context ``kind-humanizer``). It is
the only tier that skips: when there is no Docker engine, no kind, or the kube context does not exist.

Environment: ``HUMANIZER_E2E_CONTEXT`` (the kube context; set by ``make e2e-kind``),
``HUMANIZER_E2E_NAMESPACE`` (default ``humanizer``), ``HUMANIZER_E2E_RELEASE`` (default ``humanizer``),
``KUBECONFIG`` (default ``~/.kube/config``), ``KUBECTL`` (default: ``kubectl`` on PATH, else the cluster
tier's cached kubectl).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kubectl_path() -> str | None:
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    found = shutil.which("kubectl")
    if found:
        return found
    versions = dict(
        line.split("=", 1) for line in (ROOT / "tools/k8s/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    cache = Path(os.environ.get("HUMANIZER_CACHE") or Path.home() / ".cache" / "humanizer")
    cached = cache / "k8s" / versions.get("KUBERNETES_VERSION", "").strip() / "bin" / "kubectl"
    return str(cached) if cached.is_file() else None


def _run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why the kind tier cannot run here (None: it can)."""
    docker = shutil.which("docker")
    if docker is None:
        return "no Docker engine here: the docker CLI is not installed (the kind tier needs Docker and kind)"
    info = _run([docker, "info", "--format", "{{.ServerVersion}}"])
    if info is None or info.returncode != 0:
        detail = (info.stderr.strip().splitlines() or [""])[-1] if info is not None else "timed out"
        return f"no Docker engine here: `docker info` fails ({detail})"
    if shutil.which(os.environ.get("KIND", "kind")) is None:
        return "kind is not installed (https://kind.sigs.k8s.io/)"
    context = os.environ.get("HUMANIZER_E2E_CONTEXT", "")
    if not context:
        return "HUMANIZER_E2E_CONTEXT is not set (run `make e2e-kind`, which sets it to kind-humanizer)"
    kubectl = kubectl_path()
    if kubectl is None:
        return "kubectl not found (PATH, KUBECTL or the cluster tier's cache)"
    contexts = _run([kubectl, "config", "get-contexts", "-o", "name"])
    if contexts is None or context not in contexts.stdout.split():
        return f"kube context {context!r} does not exist (run `make e2e-kind`)"
    return None
