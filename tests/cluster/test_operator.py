"""The HumanizeJob operator against a real API server, real Redis and real workers (pod harness).

The operator runs as a local process (``python -m humanizer_operator``); the worker Deployment's
pods are run as real ``humanizer worker`` processes by the pod harness; the provider is the fake
OpenAI server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kopf
import pytest
from kubernetes import client

from humanizer.config import get_settings, reset_settings_cache
from humanizer.jobs.store import JobStore
from humanizer.worker.celery_app import configure_app

from .conftest import Cluster
from .helpers import Kubectl, wait_until
from .operator_support import (
    EXAMPLES,
    WORKER_SELECTOR,
    Backend,
    OperatorProcess,
    backend,
    document,
    get_hj,
    hj_status,
    humanizejob,
    install_crd,
    load_example,
    provider_calls,
    wait_phase,
    worker_deployment,
)
from .pod_harness import PodHarness

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]
F = TypeVar("F", bound=Callable[..., Any])


@pytest.fixture(scope="module")
def crd(kubectl: Kubectl) -> None:
    install_crd(kubectl)


def fake_llm(**config: Any) -> Callable[[F], F]:
    """``@fake_llm(latency=0.4)``: the fake LLM settings of one test (a plain attribute, not a marker:
    parametrizing would put brackets into the test's namespace name)."""

    def mark(fn: F) -> F:
        fn.fake_llm_config = config  # type: ignore[attr-defined]
        return fn

    return mark


@pytest.fixture
def fake_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request.function, "fake_llm_config", {"latency": 0.05}))


@pytest.fixture
def stack(
    crd: None, cluster: Cluster, core_v1: client.CoreV1Api, kubectl: Kubectl, namespace: str, tmp_path: Path,
    fake_config: dict[str, Any],
) -> Iterator[tuple[Backend, OperatorProcess, PodHarness]]:
    """Redis + fake LLM, one worker pod (run by the harness), the operator watching ``namespace``."""
    with backend(**fake_config) as be:
        # one chunk per task: 4 calls in flight, so the lifecycle tests (cancel, suspend, deadline) catch
        # their jobs mid-way; batching itself is covered by the integration tier and the autoscaling test
        env = {**be.env, "HUMANIZER_BATCH_SIZE": "1"}
        kubectl.apply(worker_deployment("worker", env, replicas=1, concurrency=4), namespace=namespace)
        operator_env = {
            **env, "HUMANIZER_WORKER_DEPLOYMENT": "worker", "HUMANIZER_WORKER_NAMESPACE": namespace,
            "HUMANIZER_AUTOSCALE_ENABLED": "false", "HUMANIZER_OPERATOR_STATUS_INTERVAL_SECONDS": "1",
        }
        harness = PodHarness(core_v1, namespace, WORKER_SELECTOR, extra_env=env, log_dir=tmp_path / "pods", grace=30)
        with harness:
            harness.wait_for_alive(1, timeout=60)
            op = OperatorProcess(cluster.kubeconfig, namespace, operator_env, tmp_path / "operator.log")
            with op:
                yield be, op, harness


def store_for(be: Backend) -> JobStore:
    return JobStore(be.redis_client())


def test_example_succeeds_and_output_is_in_a_configmap(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, core_v1: client.CoreV1Api,
    kubectl: Kubectl, namespace: str,
) -> None:
    be, op, _ = stack
    (job,) = load_example("humanizejob-inline.yaml")
    name = job["metadata"]["name"]
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "humanizejob-inline.yaml"))
    status = wait_phase(api_client, namespace, name, {"Succeeded", "Failed"}, 90, op)
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["done"] == status["progress"]["total"] > 0
    assert status["progress"]["summary"] == f"{status['progress']['total']}/{status['progress']['total']}"
    assert status["jobId"].startswith("hj-")
    assert status["startTime"] and status["completionTime"]
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert complete["status"] == "True" and complete["reason"] == "JobSucceeded"
    assert status["observedGeneration"] == 1
    assert status["tokens"]["input"] > 0

    cm = core_v1.read_namespaced_config_map(status["outputRef"]["name"], namespace)
    text = cm.data["text"]
    original = job["spec"]["input"]["text"]
    assert text.strip() and text != original
    assert "2.4" in text and "35 percent" in text  # the fake model keeps facts
    assert "verification.json" in cm.data
    (owner,) = cm.metadata.owner_references
    assert owner.kind == "HumanizeJob" and owner.name == name and owner.controller

    out = kubectl("get", "hj", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "PHASE", "PROGRESS", "STYLE"], out
    assert row.split()[1:4] == ["Succeeded", status["progress"]["summary"], "casual"], out

    obj = get_hj(api_client, namespace, name)
    assert obj is not None
    annotations = obj["metadata"].get("annotations") or {}
    assert not any(k.startswith("kopf.zalando.org") for k in annotations)  # kopf's state: ours, not .status
    assert set(status) <= {
        "phase", "progress", "conditions", "startTime", "completionTime", "jobId", "outputRef", "tokens", "retries",
        "deadLetters", "observedGeneration", "style", "message", "verificationPassed",
    }
    events = {e.reason for e in core_v1.list_namespaced_event(namespace).items}
    assert {"Started", "Completed"} <= events
    assert provider_calls(be.fake) >= 1


def test_configmap_input_and_custom_prompt(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, core_v1: client.CoreV1Api,
    kubectl: Kubectl, namespace: str,
) -> None:
    _, op, _ = stack
    docs = load_example("humanizejob-configmap.yaml")
    kubectl.apply(docs, namespace=namespace)
    status = wait_phase(api_client, namespace, "quarterly-report", {"Succeeded", "Failed"}, 90, op)
    assert status["phase"] == "Succeeded", status
    assert status["style"] == "custom"
    cm = core_v1.read_namespaced_config_map("quarterly-report-humanized", namespace)
    assert "18 percent" in cm.data["text"]


def test_missing_input_configmap_waits_then_runs(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, kubectl: Kubectl,
    namespace: str,
) -> None:
    _, op, _ = stack
    kubectl.apply(humanizejob("late", {"input": {"configMapRef": {"name": "late-src", "key": "doc"}}}),
                  namespace=namespace)

    def waiting() -> bool:
        conds = hj_status(api_client, namespace, "late").get("conditions") or []
        return any(c["type"] == "Submitted" and c["reason"] == "InputNotFound" for c in conds)

    wait_until(waiting, 30, "condition Submitted=False/InputNotFound")
    kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late-src"},
                   "data": {"doc": document(2)}}, namespace=namespace)
    status = wait_phase(api_client, namespace, "late", {"Succeeded", "Failed"}, 60, op)
    assert status["phase"] == "Succeeded", status


@fake_llm(latency=0.4)
def test_delete_cancels_the_job(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, kubectl: Kubectl,
    namespace: str,
) -> None:
    be, _, _ = stack
    kubectl.apply(humanizejob("doomed", {"input": {"text": document(60)}, "chunking": {"maxTokens": 40}}),
                  namespace=namespace)

    def some_progress() -> bool:
        return int((hj_status(api_client, namespace, "doomed").get("progress") or {}).get("done", 0)) >= 2

    wait_until(some_progress, 60, "the job to rewrite a few chunks")
    job_id = hj_status(api_client, namespace, "doomed")["jobId"]
    kubectl("delete", "hj", "doomed", "-n", namespace, "--wait=true", "--timeout=60s", timeout=90)
    assert get_hj(api_client, namespace, "doomed") is None
    stats = be.fake.stats()
    started = stats["total"] + stats["in_flight"]
    view = store_for(be).view(job_id, with_result=False)
    assert view.status.value == "CANCELLED"
    assert view.progress.completed < view.progress.total
    time.sleep(3)
    stats = be.fake.stats()
    assert stats["total"] + stats["in_flight"] == started, "provider calls after the HumanizeJob was deleted"


@fake_llm(latency=0.3)
def test_operator_killed_mid_job_completes_once(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, kubectl: Kubectl,
    namespace: str,
) -> None:
    be, op, _ = stack
    kubectl.apply(humanizejob("survivor", {"input": {"text": document(24)}, "chunking": {"maxTokens": 40}}),
                  namespace=namespace)

    def submitted() -> bool:
        return bool(hj_status(api_client, namespace, "survivor").get("jobId"))

    wait_until(submitted, 30, "the job to be submitted")
    op.kill()
    op.start()
    status = wait_phase(api_client, namespace, "survivor", {"Succeeded", "Failed"}, 120, op)
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["done"] == status["progress"]["total"] == 24
    r = be.redis_client()
    assert r.zcard("hz:jobs") == 1, "the job was submitted more than once"
    assert provider_calls(be.fake) == 24  # each chunk rewritten once (no cache in these tests)
    assert op.logs().count("job.submitted") == 1


def test_submission_is_idempotent_per_uid(
    stack: tuple[Backend, OperatorProcess, PodHarness], namespace: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restart between submitting and recording the job id submits nothing new (JobExists)."""
    from kopf._core.engines import posting

    from humanizer_operator.handlers import jobs

    be, _, _ = stack
    for key, value in be.env.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    configure_app(get_settings())
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.posting.enabled = False
    posting.settings_var.set(kopf_settings)
    try:
        body = {"apiVersion": "humanizer.dev/v1alpha1", "kind": "HumanizeJob",
                "metadata": {"name": "x", "namespace": namespace, "uid": "0f0f0f0f-1111-2222-3333-444455556666",
                             "generation": 1}}
        spec = {"input": {"text": document(3)}, "chunking": {"maxTokens": 40}}
        first, second = kopf.Patch(), kopf.Patch()
        jobs.submit(body, spec, {}, first, logging.getLogger("test"))
        jobs.submit(body, spec, {}, second, logging.getLogger("test"))
        assert first["status"]["jobId"] == second["status"]["jobId"] == "hj-0f0f0f0f-1111-2222-3333-444455556666"
        assert "already submitted" in second["status"]["conditions"][0]["message"]
        assert be.redis_client().zcard("hz:jobs") == 1
    finally:
        monkeypatch.undo()
        reset_settings_cache()
        configure_app(get_settings())


@fake_llm(latency=0.3)
def test_suspend_pauses_and_resumes(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, kubectl: Kubectl,
    namespace: str,
) -> None:
    be, op, _ = stack
    kubectl.apply(humanizejob("pausable", {"input": {"text": document(40)}, "chunking": {"maxTokens": 40}}),
                  namespace=namespace)

    def some_progress() -> bool:
        return int((hj_status(api_client, namespace, "pausable").get("progress") or {}).get("done", 0)) >= 2

    wait_until(some_progress, 60, "the job to rewrite a few chunks")
    kubectl("patch", "hj", "pausable", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')

    def suspended() -> bool:
        conds = hj_status(api_client, namespace, "pausable").get("conditions") or []
        return any(c["type"] == "Suspended" and c["status"] == "True" for c in conds)

    wait_until(suspended, 30, "condition Suspended=True")
    time.sleep(2)  # chunks that were already at the provider finish
    calls = provider_calls(be.fake) + be.fake.stats()["in_flight"]
    time.sleep(2)
    assert provider_calls(be.fake) + be.fake.stats()["in_flight"] == calls, "chunks sent while suspended"
    assert hj_status(api_client, namespace, "pausable")["phase"] == "Pending"

    kubectl("patch", "hj", "pausable", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    status = wait_phase(api_client, namespace, "pausable", {"Succeeded", "Failed"}, 120, op)
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["done"] == 40
    assert provider_calls(be.fake) == 40  # nothing rewritten twice


@fake_llm(latency=0.5)
def test_active_deadline_fails_the_job(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, kubectl: Kubectl,
    namespace: str,
) -> None:
    _, op, _ = stack
    kubectl.apply(humanizejob("slow", {"input": {"text": document(80)}, "chunking": {"maxTokens": 40},
                                       "activeDeadlineSeconds": 3}), namespace=namespace)
    status = wait_phase(api_client, namespace, "slow", {"Succeeded", "Failed", "Cancelled"}, 60, op)
    assert status["phase"] == "Failed", status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds=3" in failed["message"]


def test_ttl_deletes_finished_jobs_and_their_output(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, kubectl: Kubectl,
    namespace: str,
) -> None:
    _, op, _ = stack
    kubectl.apply(humanizejob("brief", {"input": {"text": document(2)}, "ttlSecondsAfterFinished": 2}),
                  namespace=namespace)
    wait_phase(api_client, namespace, "brief", {"Succeeded"}, 60, op)
    try:
        wait_until(lambda: get_hj(api_client, namespace, "brief") is None, 30, "the finished job to be deleted")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{get_hj(api_client, namespace, 'brief')}\n{op.logs()[-4000:]}") from None


def test_invalid_job_fails_with_reason(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, kubectl: Kubectl,
    namespace: str,
) -> None:
    """What the schema cannot see (an empty document after trimming) fails with the submitter's message."""
    _, op, _ = stack
    kubectl.apply(humanizejob("blank", {"input": {"text": "   \n  "}}), namespace=namespace)
    status = wait_phase(api_client, namespace, "blank", {"Failed", "Succeeded"}, 30, op)
    assert status["phase"] == "Failed"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec" and "empty" in failed["message"]
