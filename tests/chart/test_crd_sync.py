"""The chart's CRD (charts/humanizer/crds/) and its source of truth (manifests/crd/) do not drift.

Until the operator's manifests/crd/humanizejobs.yaml exists, the chart carries a clearly-marked placeholder
and this test says so; from then on the two files must be identical (``make chart-crd-sync`` copies it).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "manifests" / "crd" / "humanizejobs.yaml"
CHART_COPY = ROOT / "charts" / "humanizer" / "crds" / "humanizejobs.yaml"


def is_placeholder(text: str) -> bool:
    crd = yaml.safe_load(text)
    return crd["metadata"].get("annotations", {}).get("humanizer.dev/placeholder") == "true"


def test_chart_crd_matches_its_source() -> None:
    chart_text = CHART_COPY.read_text()
    if not SOURCE.exists():
        state = "a placeholder" if is_placeholder(chart_text) else "an earlier copy"
        message = f"CRD pending: {SOURCE.relative_to(ROOT)} does not exist (yet); the chart ships {state}"
        print(message)
        warnings.warn(message, stacklevel=1)
        return
    assert chart_text == SOURCE.read_text(), (
        f"{CHART_COPY.relative_to(ROOT)} differs from {SOURCE.relative_to(ROOT)}: run `make chart-crd-sync`")


def test_chart_crd_names() -> None:
    crd = yaml.safe_load(CHART_COPY.read_text())
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "humanizejobs.humanizer.dev"
    assert crd["spec"]["names"]["kind"] == "HumanizeJob"
    assert crd["spec"]["names"]["plural"] == "humanizejobs"
    assert any(v["name"] == "v1alpha1" and v["storage"] for v in crd["spec"]["versions"])
