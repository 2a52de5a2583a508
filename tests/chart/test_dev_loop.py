"""skaffold.yaml builds the chart's image and deploys the chart with it (structure only: no skaffold here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SKAFFOLD: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
VALUES: dict[str, Any] = yaml.safe_load((ROOT / "charts" / "humanizer" / "values.yaml").read_text())


def has_value(path: str) -> bool:
    node: Any = VALUES
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_build_and_deploy() -> None:
    assert SKAFFOLD["apiVersion"].startswith("skaffold/v4")
    (artifact,) = SKAFFOLD["build"]["artifacts"]
    assert artifact["image"] == VALUES["image"]["repository"]
    assert artifact["docker"]["dockerfile"] == "Dockerfile" and (ROOT / "Dockerfile").exists()
    assert SKAFFOLD["build"]["local"]["push"] is False
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").exists()
    templates = release["setValueTemplates"]
    assert templates["image.repository"] == "{{.IMAGE_REPO_humanizer}}"
    assert templates["image.tag"].startswith("{{.IMAGE_TAG_humanizer}}")
    for key in [*templates, *release.get("setValues", {})]:
        assert has_value(key), f"skaffold sets {key}, which values.yaml does not have"


def test_kind_profile() -> None:
    (kind,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "kind"]
    assert {"kubeContext": "kind-humanizer"} in kind["activation"]
    for patch in kind["patches"]:
        prefix = "/deploy/helm/releases/0/setValues/"
        if patch["path"].startswith(prefix):
            assert has_value(patch["path"].removeprefix(prefix)), patch["path"]
