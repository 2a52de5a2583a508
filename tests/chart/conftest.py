"""Fixtures for the chart tests: the cluster tier's helm binary and a ``render(**values)`` helper."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "humanizer"
RELEASE = "hz"
NAMESPACE = "humanizer"


def helm_path() -> Path:
    """$HELM, else the helm that tools/k8s/build.sh caches (same path as mk/cluster.mk's CLUSTER_HELM)."""
    if os.environ.get("HELM"):
        return Path(os.environ["HELM"])
    versions = dict(
        line.split("=", 1) for line in (ROOT / "tools/k8s/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    cache = Path(os.environ.get("HUMANIZER_CACHE") or Path.home() / ".cache" / "humanizer")
    return cache / "helm" / versions["HELM_VERSION"].strip() / "bin" / "helm"


class Helm:
    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data")}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=120)
        if check and res.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
        return res

    def template(self, values: dict[str, Any] | None = None, *extra: str, check: bool = True
                 ) -> subprocess.CompletedProcess[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
        for key, value in flatten(values or {}).items():
            args += ["--set-json", f"{key}={yaml_json(value)}"]
        return self(*args, check=check)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and empty dicts stay values."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def yaml_json(value: Any) -> str:
    import json

    return json.dumps(value)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = helm_path()
    if not binary.is_file():
        pytest.fail(f"helm not found at {binary}: run `make cluster-tools` (tools/k8s/build.sh helm) or set HELM")
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


Objects = list[dict[str, Any]]


@pytest.fixture(scope="session")
def render(helm: Helm) -> Callable[..., Objects]:
    """``render({"flower": {"enabled": True}})`` -> the rendered objects (CRDs included)."""
    cache: dict[str, Objects] = {}

    def _render(values: dict[str, Any] | None = None, *extra: str) -> Objects:
        key = repr((values, extra))
        if key not in cache:
            out = helm.template(values, "--include-crds", *extra).stdout
            cache[key] = [d for d in yaml.safe_load_all(out) if d]
        return cache[key]

    return _render


def by_kind(objects: Objects, kind: str) -> Objects:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: found {len(found)}"
    return found[0]


def pod_specs(objects: Objects) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]
