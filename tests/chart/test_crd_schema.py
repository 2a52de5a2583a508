"""The HumanizeJob CRD's size bounds (read from the file; the API server applies them in tests/cluster/test_crd.py,
and the CEL rule was compiled and evaluated with k8s.io/apiextensions-apiserver when it was written).

* ``spec.input.text``: ``maxLength`` counts characters (as CEL's ``size()`` does), and a UTF-8 character
  takes up to 4 bytes, so the bound keeps the text within 1 MiB; longer documents go by ``configMapRef``.
* ``metadata.name``: the default output ConfigMap is ``<name>-output`` and a ConfigMap name has at most 253
  characters, so a longer name needs ``spec.output.configMapName`` (a root rule: only there is
  ``self.metadata.name`` visible to CEL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests" / "crd" / "humanizejobs.yaml"
MIB = 1024 * 1024
OUTPUT_SUFFIX = "-output"  # humanizer_operator: <job name>-output


def schema() -> dict[str, Any]:
    (version,) = yaml.safe_load(CRD.read_text())["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def test_inline_text_is_bounded_by_bytes() -> None:
    text = schema()["properties"]["spec"]["properties"]["input"]["properties"]["text"]
    assert text["maxLength"] * 4 <= MIB, "4-byte UTF-8 characters could exceed 1 MiB"
    assert text["maxLength"] >= 200_000
    assert "configMapRef" in text["description"] and "1 MiB" in text["description"]
    assert f"{text['maxLength']:,}" in text["description"]


def test_name_leaves_room_for_the_output_configmap_name() -> None:
    rules = schema()["x-kubernetes-validations"]
    (rule,) = [r for r in rules if "self.metadata.name" in r["rule"]]
    limit = 253 - len(OUTPUT_SUFFIX)
    assert f"size(self.metadata.name) <= {limit}" in rule["rule"]
    assert "has(self.spec.output.configMapName)" in rule["rule"]  # a named output lifts the limit
    assert f"at most {limit} characters" in rule["message"] and "configMapName" in rule["message"]
