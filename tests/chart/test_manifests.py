"""manifests/ holds the CRD (the chart's source of truth for it) and example HumanizeJobs, nothing else.

A hand-written install manifest drifted from the chart once (another Secret key, a ConfigMap the chart does
not create, other autoscaler defaults, missing RBAC): installs without Helm come from ``helm template``
(docs/chart.md, "Without Helm"), so there is one description of the install.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"


def test_manifests_are_the_crd_and_examples_only() -> None:
    files = sorted(str(p.relative_to(MANIFESTS)) for p in MANIFESTS.rglob("*") if p.is_file())
    assert files == ["crd/humanizejobs.yaml", *sorted(
        f"examples/{p.name}" for p in (MANIFESTS / "examples").glob("*.yaml"))], files
    for path in (MANIFESTS / "examples").glob("*.yaml"):
        kinds = {d["kind"] for d in yaml.safe_load_all(path.read_text()) if d}
        assert kinds <= {"HumanizeJob", "ConfigMap"}, f"{path.name}: {kinds}"


def test_nothing_points_at_a_hand_written_install_manifest() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    this = Path(__file__).relative_to(ROOT).as_posix()
    for name in tracked:
        path = ROOT / name
        if name == this or not name.endswith((".md", ".py", ".yaml", ".yml", ".mk", ".txt", ".tpl")) or \
                not path.is_file():
            continue
        assert "manifests/install" not in path.read_text(errors="replace"), (
            f"{name} points at manifests/install/: install from the chart (helm install, or helm template)")
