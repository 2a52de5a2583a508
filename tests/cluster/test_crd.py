"""The HumanizeJob CRD: the chart ships the same file, every field is documented, the API server
rejects invalid objects with a useful message, and the spec is immutable where it should be."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .helpers import Kubectl
from .operator_support import CHART_CRD_PATH, CRD_PATH, humanizejob, install_crd

pytestmark = pytest.mark.cluster


def test_chart_crd_is_identical_to_the_manifest() -> None:
    assert CHART_CRD_PATH.is_file(), (
        f"{CHART_CRD_PATH.relative_to(CRD_PATH.parents[2])} is missing: the chart must ship a copy of "
        f"{CRD_PATH.relative_to(CRD_PATH.parents[2])}"
    )
    assert CHART_CRD_PATH.read_bytes() == CRD_PATH.read_bytes(), (
        "charts/humanizer/crds/humanizejobs.yaml differs from manifests/crd/humanizejobs.yaml (the source of "
        "truth): copy it over (make chart-crd-sync)"
    )


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


def test_every_field_has_a_description() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    missing = [p for p, n in _walk(schema, "humanizejob") if not n.get("description") and p != "humanizejob.metadata"]
    assert not missing, f"fields without a description (kubectl explain shows nothing): {missing}"


@pytest.fixture(scope="module")
def crd(kubectl: Kubectl) -> None:
    install_crd(kubectl)


def test_kubectl_explain_documents_nested_fields(crd: None, kubectl: Kubectl) -> None:
    for field in ("hj.spec.input.configMapRef.key", "hj.spec.chunking.maxTokens", "hj.status.conditions.reason",
                  "hj.spec.suspend", "hj.status.progress.summary"):
        out = kubectl("explain", field).stdout
        assert "DESCRIPTION" in out and len(out.split("DESCRIPTION:", 1)[1].strip()) > 10, out


VALID = {"input": {"text": "Hello world, this is a document."}, "style": "casual"}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("both inputs", {"input": {"text": "x", "configMapRef": {"name": "a", "key": "b"}}},
     "exactly one of spec.input.text or spec.input.configMapRef"),
    ("no input", {"input": {}}, "exactly one of spec.input.text or spec.input.configMapRef"),
    ("unknown style", {"input": {"text": "x"}, "style": "pirate"}, "spec.style"),
    ("style and custom prompt", {"input": {"text": "x"}, "style": "casual", "customPrompt": "Be brief."},
     "not both"),
    ("negative deadline", {"input": {"text": "x"}, "activeDeadlineSeconds": -5}, "spec.activeDeadlineSeconds"),
    ("negative ttl", {"input": {"text": "x"}, "ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished"),
    ("chunk budget too small", {"input": {"text": "x"}, "chunking": {"maxTokens": 3}}, "spec.chunking.maxTokens"),
    ("temperature too high", {"input": {"text": "x"}, "model": {"temperature": 7}}, "spec.model.temperature"),
    ("unknown priority", {"input": {"text": "x"}, "priority": "urgent"}, "spec.priority"),
    ("bad configmap name", {"input": {"configMapRef": {"name": "Not_A_Name", "key": "k"}}},
     "spec.input.configMapRef.name"),
]


@pytest.mark.parametrize(("case", "spec", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_api_server_rejects_invalid_jobs(
    crd: None, kubectl: Kubectl, case: str, spec: dict[str, Any], expected: str
) -> None:
    proc = kubectl("apply", "--dry-run=server", "-f", "-", "-n", "default",
                   input=yaml.safe_dump(humanizejob("bad", spec)), check=False)
    assert proc.returncode != 0, f"{case}: accepted"
    assert expected in proc.stderr, f"{case}: {proc.stderr}"


def test_spec_is_immutable_except_the_lifecycle_fields(crd: None, kubectl: Kubectl) -> None:
    ns = "default"
    kubectl.apply(humanizejob("frozen", VALID), namespace=ns)
    try:
        for patch, expected in [
            ({"spec": {"input": {"text": "Another document."}}}, "spec.input is immutable"),
            ({"spec": {"style": "academic"}}, "spec.style is immutable"),
            ({"spec": {"priority": "high"}}, "spec.priority is immutable"),
            ({"spec": {"chunking": {"maxTokens": 100}}}, "spec.chunking is immutable"),
        ]:
            proc = kubectl("patch", "hj", "frozen", "-n", ns, "--type=merge", "-p", yaml.safe_dump(patch),
                           check=False)
            assert proc.returncode != 0 and expected in proc.stderr, (patch, proc.stderr)
        for patch in ({"spec": {"suspend": True}}, {"spec": {"activeDeadlineSeconds": 60}},
                      {"spec": {"ttlSecondsAfterFinished": 30}}):
            kubectl("patch", "hj", "frozen", "-n", ns, "--type=merge", "-p", yaml.safe_dump(patch))
    finally:
        kubectl("delete", "hj", "frozen", "-n", ns, "--wait=false", check=False)
        # no operator in this test: drop any finalizer an earlier operator version could have left
        kubectl("patch", "hj", "frozen", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                check=False)


def test_api_server_bounds_the_name_and_the_inline_text(crd: None, kubectl: Kubectl) -> None:
    """``kubectl create`` (no last-applied annotation, which would copy the text): a name that leaves no room
    for ``<name>-output`` is refused unless the output is named, and inline text is bounded so that even
    4-byte characters stay within 1 MiB."""

    def create(name: str, spec: dict[str, Any]) -> Any:
        return kubectl("create", "--dry-run=server", "-f", "-", "-n", "default",
                       input=yaml.safe_dump(humanizejob(name, spec)), check=False)

    assert create("a" * 246, VALID).returncode == 0
    refused = create("a" * 247, VALID)
    assert refused.returncode != 0 and "metadata.name may have at most 246 characters" in refused.stderr
    assert create("a" * 250, {**VALID, "output": {"configMapName": "named-output"}}).returncode == 0
    assert create("long", {"input": {"text": "\u00e9" * 262_144}}).returncode == 0
    refused = create("long", {"input": {"text": "x" * 262_145}})
    assert refused.returncode != 0 and "spec.input.text" in refused.stderr, refused.stderr
