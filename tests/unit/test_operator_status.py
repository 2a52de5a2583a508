"""The operator without a cluster: no handler that makes kopf put a finalizer on HumanizeJobs, the status
loop's ``sync(object, view)``, output ConfigMap names, and the watched-namespace scope."""

from __future__ import annotations

import json
import time
from typing import Any

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from humanizer.jobs.models import JobStatus, JobView, Progress, SecondPassFigures, TellScores
from humanizer_operator import k8s, scope, service, status
from humanizer_operator.handlers import jobs, progress

pytestmark = pytest.mark.unit

UID = "0f0f0f0f-1111-2222-3333-444455556666"


def test_no_handler_needs_a_finalizer() -> None:
    """kopf adds its finalizer for timers and daemons (spawning handlers) and for non-optional deletion
    handlers; the operator registers neither, so HumanizeJobs never get one."""
    import humanizer_operator.main  # noqa: F401  (registers every handler)

    registry = kopf.get_default_registry()
    assert not list(registry._spawning._handlers), "a timer or daemon puts kopf's finalizer on every object"
    changing = list(registry._changing._handlers)
    assert changing
    assert not [h.id for h in changing if h.requires_finalizer], "a delete handler puts kopf's finalizer on objects"
    assert "humanizejob_deleted" in {h.id for h in registry._watching._handlers}


def body(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": k8s.API_VERSION, "kind": k8s.KIND,
        "metadata": {"name": "doc", "namespace": "ns", "uid": UID, "generation": 1, "resourceVersion": "7"},
        "spec": {"input": {"text": "x"}, **spec},
        "status": dict(status or {}),
    }


def view(status: JobStatus, done: int, total: int = 4, **extra: Any) -> JobView:
    return JobView(
        job_id=jobs.job_id_for(UID), status=status, phase="rewriting",
        progress=Progress(completed=done, failed=0, skipped=0, total=total, percentage=100.0 * done / total),
        provider="openai", model="m", style="neutral", retries=0, tokens_in=10 * done, tokens_out=9 * done,
        created_at=time.time() - 5, started_at=time.time() - 4, finished_at=extra.pop("finished_at", None),
        error=extra.pop("error", None), dead_letters=0, **extra,
    )


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    posted: list[tuple[str, str, str]] = []
    monkeypatch.setattr(k8s, "post_event", lambda _b, t, r, m: posted.append((t, r, m)))
    return posted


RUNNING = {"phase": "Running", "jobId": jobs.job_id_for(UID), "startTime": k8s.rfc3339(time.time() - 4)}


def test_sync_mirrors_progress_and_patches_only_what_changed(events: list[tuple[str, str, str]]) -> None:
    first = progress.sync(body(RUNNING), view(JobStatus.PROGRESS, 1))
    assert not first.delete
    assert first.status["progress"] == {"done": 1, "failed": 0, "total": 4, "summary": "1/4"}
    assert first.status["tokens"] == {"input": 10, "output": 9}
    assert first.status["observedGeneration"] == 1 and first.status["message"] == "rewriting"
    assert "phase" not in first.status  # Running already
    applied = {**RUNNING, **first.status}
    assert progress.sync(body(applied), view(JobStatus.PROGRESS, 1)).status == {}
    assert set(progress.sync(body(applied), view(JobStatus.PROGRESS, 2)).status) == {"progress", "tokens"}
    assert events == []


def test_sync_skips_what_needs_no_job_record(events: list[tuple[str, str, str]]) -> None:
    assert progress.job_to_read(body({})) is None  # not submitted yet
    assert progress.job_to_read(body(RUNNING, suspend=True)) is None
    assert progress.job_to_read(body({**RUNNING, "phase": "Succeeded"})) is None
    assert progress.job_to_read(body(RUNNING)) == jobs.job_id_for(UID)
    assert progress.sync(body({}), None) == progress.Sync()
    assert progress.sync(body(RUNNING, suspend=True), None) == progress.Sync()


def test_sync_deletes_a_finished_job_after_its_ttl(events: list[tuple[str, str, str]]) -> None:
    finished = {**RUNNING, "phase": "Succeeded", "completionTime": k8s.rfc3339(time.time() - 30)}
    assert progress.sync(body(finished, ttlSecondsAfterFinished=10), None).delete
    assert not progress.sync(body(finished, ttlSecondsAfterFinished=60), None).delete
    assert not progress.sync(body(finished), None).delete


def test_sync_reports_a_lost_job(events: list[tuple[str, str, str]]) -> None:
    out = progress.sync(body(RUNNING), None)
    assert out.status["phase"] == "Failed"
    (cond,) = out.status["conditions"]
    assert cond["reason"] == "JobLost" and "gone from Redis" in cond["message"]
    assert [r for _, r, _ in events] == ["JobLost"]


def test_sync_cancelled_and_failed_jobs(events: list[tuple[str, str, str]]) -> None:
    cancelled = progress.sync(body(RUNNING), view(JobStatus.CANCELLED, 2, error="cancelled by request"))
    assert cancelled.status["phase"] == "Cancelled" and cancelled.status["message"] == "cancelled by request"
    failed = progress.sync(body(RUNNING), view(JobStatus.FAILURE, 2, error="token budget exceeded"))
    assert failed.status["phase"] == "Failed"
    assert failed.status["conditions"][0]["reason"] == "JobFailed"
    assert [r for _, r, _ in events] == ["Cancelled", "Failed"]


class FakeStore:
    def result(self, job_id: str) -> str:
        return "the rewritten text"

    def report(self, job_id: str) -> dict[str, Any]:
        return {"passed": True, "tells": {"before": {"score": 46.6}, "after": {"score": 15.1}}}


def test_status_carries_the_ai_tell_score_and_second_passes_once_there(
    events: list[tuple[str, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    running = progress.sync(body(RUNNING), view(JobStatus.PROGRESS, 2))
    assert "aiTellScore" not in running.status and "secondPass" not in running.status
    monkeypatch.setattr(service, "store", FakeStore)
    monkeypatch.setattr(k8s, "write_owned_configmap", lambda *_: None)
    done = view(JobStatus.SUCCESS, 4, finished_at=time.time(), ai_tell_score=TellScores(before=46.6, after=15.0),
                second_pass=SecondPassFigures(calls=2, kept=1, over_budget=3, tokens_in=700, tokens_out=80))
    out = progress.sync(body(RUNNING), done)
    assert out.status["aiTellScore"] == {"before": 46.6, "after": 15.0, "summary": "46.6 → 15.0"}
    assert out.status["secondPass"] == {"calls": 2, "kept": 1, "overBudget": 3, "tokens": {"input": 700, "output": 80}}
    assert out.status["message"].endswith("verification passed; AI-tell score 46.6 → 15.1")
    # the API server gives 15.0 back as 15: still no change to patch
    stored = json.loads(json.dumps({**RUNNING, **out.status}).replace("15.0,", "15,"))
    assert stored["aiTellScore"]["after"] == 15 and isinstance(stored["aiTellScore"]["after"], int)
    assert "aiTellScore" not in progress.changed(stored, status.mirrored(done))


def test_the_crd_declares_the_status_fields_the_operator_writes() -> None:
    from pathlib import Path

    import yaml

    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifests/crd/humanizejobs.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    props = version["schema"]["openAPIV3Schema"]["properties"]
    done = view(JobStatus.SUCCESS, 4, ai_tell_score=TellScores(before=1.0, after=0.5),
                second_pass=SecondPassFigures(calls=1, kept=1, over_budget=0, tokens_in=1, tokens_out=1))

    def undeclared(value: Any, schema: dict[str, Any], where: str) -> list[str]:
        if not isinstance(value, dict):
            return []
        known = schema.get("properties") or {}
        return [f"{where}.{k}" for k in value if k not in known] + [
            p for k, v in value.items() if k in known for p in undeclared(v, known[k], f"{where}.{k}")]

    assert undeclared(status.mirrored(done), props["status"], "status") == []
    assert "enabled" in props["spec"]["properties"]["secondPass"]["properties"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["AI-Tells"] == ".status.aiTellScore.summary"


def test_spec_second_pass_reaches_the_job_request() -> None:
    assert jobs.build_request({"secondPass": {"enabled": False}}, "text", "j1").second_pass is False
    assert jobs.build_request({}, "text", "j2").second_pass is None


def test_sync_writes_the_output_and_succeeds(
    events: list[tuple[str, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
    monkeypatch.setattr(service, "store", FakeStore)
    monkeypatch.setattr(k8s, "write_owned_configmap",
                        lambda ns, name, data, owner, labels: written.append((ns, name, dict(data), dict(labels))))
    out = progress.sync(body(RUNNING), view(JobStatus.SUCCESS, 4, finished_at=time.time()))
    assert out.status["phase"] == "Succeeded" and out.status["verificationPassed"] is True
    assert out.status["outputRef"] == {"name": "doc-output", "key": "text", "verificationKey": "verification.json"}
    ((ns, name, data, labels),) = written
    assert (ns, name, data["text"], labels) == ("ns", "doc-output", "the rewritten text", {k8s.JOB_LABEL: "doc"})
    assert [r for _, r, _ in events] == ["Completed"]


def test_a_refused_output_configmap_fails_the_job_instead_of_retrying(
    events: list[tuple[str, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 422 on the output ConfigMap (a job submitted by an earlier version with a name that no valid
    ConfigMap name can come from) ends the job Failed, with the API server's message, once."""

    def refuse(*_: Any) -> None:
        exc = ApiException(status=422, reason="Unprocessable Entity")
        exc.body = json.dumps({"kind": "Status", "message": 'ConfigMap "x" is invalid: metadata.name: Invalid value'})
        raise exc

    monkeypatch.setattr(service, "store", FakeStore)
    monkeypatch.setattr(k8s, "write_owned_configmap", refuse)
    out = progress.sync(body(RUNNING), view(JobStatus.SUCCESS, 4, finished_at=time.time()))
    assert out.status["phase"] == "Failed"
    (cond,) = out.status["conditions"]
    assert cond["reason"] == "OutputRejected" and "metadata.name: Invalid value" in cond["message"]
    assert [r for _, r, _ in events] == ["OutputRejected"]

    def unavailable(*_: Any) -> None:
        raise ApiException(status=503, reason="Service Unavailable")

    monkeypatch.setattr(k8s, "write_owned_configmap", unavailable)
    with pytest.raises(ApiException):  # not a refusal: the next pass tries again
        progress.sync(body(RUNNING), view(JobStatus.SUCCESS, 4, finished_at=time.time()))


def test_output_configmap_names() -> None:
    ok = {"metadata": {"name": "a" * 246}}
    assert jobs.output_name(ok, {}) == "a" * 246 + "-output"
    assert jobs.output_name_problem(ok, {}) is None
    long = {"metadata": {"name": "a" * 247}}
    problem = jobs.output_name_problem(long, {})
    assert problem is not None and "254 characters" in problem and "at most 246" in problem
    assert jobs.output_name_problem(long, {"output": {"configMapName": "short"}}) is None
    bad = jobs.output_name_problem(ok, {"output": {"configMapName": "a..b"}})
    assert bad is not None and "choose another spec.output.configMapName" in bad
    assert k8s.is_dns1123_subdomain("a.b-c") and not k8s.is_dns1123_subdomain("a.-b")
    assert k8s.is_label_value("a" * 63) and not k8s.is_label_value("a" * 64)


def test_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    from humanizer_operator.settings import reset_operator_settings

    globbed = scope.Scope(False, ("team-*,!team-tmp", "prod"))  # kopf: one pattern per --namespace
    assert globbed.matches("team-a") and globbed.matches("prod")
    assert not globbed.matches("team-tmp") and not globbed.matches("dev")
    assert not globbed.exact and scope.Scope(False, ("a", "b")).exact
    assert scope.Scope(True).matches("anything")

    class Peering:
        clusterwide = False

    class Settings:
        peering = Peering()

    # embedded kopf (no command line): the defaults humanizer-operator would pass
    monkeypatch.setenv("HUMANIZER_OPERATOR_NAMESPACES", "a,b")
    reset_operator_settings()
    try:
        assert scope.detect(Settings()) == scope.Scope(False, ("a", "b"))
        Peering.clusterwide = True
        assert scope.detect(Settings()) == scope.Scope(True)
    finally:
        monkeypatch.undo()
        reset_operator_settings()
