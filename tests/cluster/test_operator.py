"""The HumanizeJob operator against a real API server, real Redis and real workers (pod harness).

The operator runs as a local process (``python -m humanizer_operator``); the worker Deployment's
pods are run as real ``humanizer worker`` processes by the pod harness; the provider is the fake
OpenAI server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kopf
import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from humanizer.broker import configure_app
from humanizer.config import get_settings, reset_settings_cache
from humanizer.jobs.store import JobStore
from humanizer.monitoring.queues import held_messages

from .conftest import Cluster
from .helpers import Kubectl, wait_until
from .operator_support import (
    CRD_PATH,
    EXAMPLES,
    GROUP,
    PLURAL,
    VERSION,
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
    # the AI-tell score of the verification report, in the status and its printer column
    tells = status["aiTellScore"]
    report = json.loads(cm.data["verification.json"])["tells"]
    assert (tells["before"], tells["after"]) == (report["before"]["score"], report["after"]["score"])
    assert tells["summary"] == f"{tells['before']:.1f} → {tells['after']:.1f}" and tells["summary"] in out, out
    assert header.split()[4] == "AI-TELLS", out
    assert status["message"].endswith(f"; AI-tell score {tells['summary']}"), status["message"]

    obj = get_hj(api_client, namespace, name)
    assert obj is not None
    annotations = obj["metadata"].get("annotations") or {}
    assert not any(k.startswith("kopf.zalando.org") for k in annotations)  # kopf's state: ours, not .status
    assert set(status) <= {
        "phase", "progress", "conditions", "startTime", "completionTime", "jobId", "outputRef", "tokens", "retries",
        "deadLetters", "observedGeneration", "style", "message", "verificationPassed", "aiTellScore", "secondPass",
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
    """Deleting a running HumanizeJob (no finalizer: the delete returns at once) cancels its job within a
    second or two (the operator's DELETED event handler); once the chunks the workers held are done,
    no provider call is made for it."""
    be, op, _ = stack
    kubectl.apply(humanizejob("doomed", {"input": {"text": document(60)}, "chunking": {"maxTokens": 40}}),
                  namespace=namespace)

    def some_progress() -> bool:
        return int((hj_status(api_client, namespace, "doomed").get("progress") or {}).get("done", 0)) >= 2

    wait_until(some_progress, 60, "the job to rewrite a few chunks")
    job_id = hj_status(api_client, namespace, "doomed")["jobId"]
    kubectl("delete", "hj", "doomed", "-n", namespace, "--wait=true", "--timeout=60s", timeout=90)
    deleted = time.monotonic()
    assert get_hj(api_client, namespace, "doomed") is None
    store = store_for(be)
    wait_until(lambda: store.view(job_id, with_result=False).status.value == "CANCELLED", 10,
               f"job {job_id} to be cancelled\n{op.logs()[-3000:]}", interval=0.05)
    latency = time.monotonic() - deleted
    assert latency < 3.0, f"cancelled {latency:.2f}s after the HumanizeJob was deleted"
    r = be.redis_client()
    wait_until(lambda: not any(t.startswith(f"{job_id}:") for t, _ in held_messages(r)), 30,
               "the workers to let go of the job's chunk tasks")
    stats = be.fake.stats()
    started = stats["total"] + stats["in_flight"]
    view = store.view(job_id, with_result=False)
    assert view.status.value == "CANCELLED"
    assert view.progress.completed < view.progress.total
    time.sleep(3)
    stats = be.fake.stats()
    assert stats["total"] + stats["in_flight"] == started, "provider calls after the HumanizeJob was deleted"
    print(f"cancelled {latency:.2f}s after the delete returned")


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


class HJWatch:
    """Every watch event of the HumanizeJobs of one namespace, from now on (a background thread)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.api = cluster.api_client()
        self.namespace = namespace
        self.events: list[tuple[str, str, list[str], str | None]] = []  # type, name, finalizers, phase
        self.errors: list[str] = []
        self._stop = threading.Event()
        listed = client.CustomObjectsApi(self.api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        self._rv = listed["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, daemon=True, name="hj-watch")

    def __enter__(self) -> HJWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.api.close()

    def _run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while not self._stop.is_set():
            try:
                for ev in watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                                               PLURAL, resource_version=self._rv, timeout_seconds=2):
                    obj = ev["object"]
                    meta = obj["metadata"]
                    self._rv = meta["resourceVersion"]
                    self.events.append((ev["type"], meta["name"], list(meta.get("finalizers") or []),
                                        (obj.get("status") or {}).get("phase")))
            except Exception as exc:  # keep watching (and say so if it matters)
                self.errors.append(repr(exc))
                time.sleep(0.2)


def test_no_finalizer_ever(
    stack: tuple[Backend, OperatorProcess, PodHarness], cluster: Cluster, api_client: client.ApiClient,
    kubectl: Kubectl, namespace: str,
) -> None:
    """No version of a HumanizeJob the operator handles (created, submitted, running, succeeded, a few
    status passes after that, deleted) carries a finalizer."""
    _, op, _ = stack
    with HJWatch(cluster, namespace) as seen:
        kubectl.apply(humanizejob("tidy", {"input": {"text": document(4)}, "chunking": {"maxTokens": 40}}),
                      namespace=namespace)
        wait_phase(api_client, namespace, "tidy", {"Succeeded"}, 60, op)
        time.sleep(3)  # three more passes of the status loop (1 s here)
        obj = get_hj(api_client, namespace, "tidy")
        assert obj is not None
        annotations = obj["metadata"].get("annotations") or {}
        assert any(k.startswith("humanizer.dev/") for k in annotations), annotations  # kopf did handle it
        kubectl("delete", "hj", "tidy", "-n", namespace, "--wait=true", "--timeout=10s", timeout=30)
        wait_until(lambda: any(t == "DELETED" for t, *_ in seen.events), 10, "the DELETED watch event")
    phases = [phase for _, _, _, phase in seen.events]
    assert {"Running", "Succeeded"} <= set(phases), seen.events
    assert len(seen.events) >= 4, seen.events
    with_finalizers = [e for e in seen.events if e[2]]
    assert not with_finalizers, f"versions with finalizers: {with_finalizers}"


@fake_llm(latency=0.4)
def test_operator_down_deleting_jobs_and_the_namespace_completes(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, core_v1: client.CoreV1Api,
    kubectl: Kubectl, namespace: str,
) -> None:
    """With the operator stopped (helm uninstall, scaled to zero), deleting a running HumanizeJob and then
    the namespace (with a finished job and its output ConfigMap still in it) completes within 60 s."""
    _, op, _ = stack
    kubectl.apply(humanizejob("done", {"input": {"text": document(2)}}), namespace=namespace)
    kubectl.apply(humanizejob("busy", {"input": {"text": document(60)}, "chunking": {"maxTokens": 40}}),
                  namespace=namespace)
    wait_phase(api_client, namespace, "done", {"Succeeded"}, 60, op)
    wait_phase(api_client, namespace, "busy", {"Running"}, 60, op)
    op.stop()
    t0 = time.monotonic()
    kubectl("delete", "hj", "busy", "-n", namespace, "--wait=true", "--timeout=60s", timeout=90)
    hj_deleted = time.monotonic() - t0
    assert get_hj(api_client, namespace, "busy") is None
    core_v1.delete_namespace(namespace)

    def namespace_gone() -> bool:
        try:
            core_v1.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    try:
        wait_until(namespace_gone, 60, f"namespace {namespace} to be deleted", interval=0.5)
    except AssertionError as exc:
        left = kubectl("get", "hj,cm,pods", "-n", namespace, "-o", "yaml", check=False).stdout
        ns = kubectl("get", "namespace", namespace, "-o", "yaml", check=False).stdout
        raise AssertionError(f"{exc}\n{ns}\n{left[-4000:]}") from None
    total = time.monotonic() - t0
    assert total < 60
    print(f"operator down: HumanizeJob deleted in {hj_deleted:.1f}s, namespace gone {total:.1f}s after")


@fake_llm(latency=0.5)
def test_job_of_a_job_deleted_while_the_operator_was_down_is_cancelled(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, kubectl: Kubectl,
    namespace: str,
) -> None:
    """The orphan case: a running HumanizeJob deleted while the operator is down; once the operator is
    back its job is cancelled within seconds. Jobs that are not orphans are left alone: another running
    HumanizeJob, an ``hj-`` job without the HumanizeJob marker (the HTTP API lets callers choose ids),
    and a job of a HumanizeJob in a namespace this operator does not watch."""
    be, op, _ = stack
    # 160 chunks, 4 at a time, 0.5 s each: 20 s of work, still running once the operator is back (~7 s)
    kubectl.apply(humanizejob("orphan", {"input": {"text": document(160)}, "chunking": {"maxTokens": 40}}),
                  namespace=namespace)

    def some_progress() -> bool:
        return int((hj_status(api_client, namespace, "orphan").get("progress") or {}).get("done", 0)) >= 2

    wait_until(some_progress, 60, "the job to rewrite a few chunks")
    kubectl.apply(humanizejob("bystander", {"input": {"text": document(6, tag="b")}, "chunking": {"maxTokens": 40}}),
                  namespace=namespace)
    wait_until(lambda: bool(hj_status(api_client, namespace, "bystander").get("jobId")), 30, "bystander submitted")
    orphan = get_hj(api_client, namespace, "orphan")
    assert orphan is not None
    job_id, uid = orphan["status"]["jobId"], orphan["metadata"]["uid"]
    r = be.redis_client()
    record = r.hgetall(f"hz:job:{job_id}")
    assert (record["origin_kind"], record["origin_namespace"], record["origin_name"], record["origin_uid"]) == (
        "HumanizeJob", namespace, "orphan", uid), record
    # two unfinished jobs that are not this operator's orphans (never touched by workers: no chunks)
    strangers = {
        "hj-00000000-0000-4000-8000-000000000001": {},  # no marker
        "hj-00000000-0000-4000-8000-000000000002": {"origin_kind": "HumanizeJob", "origin_namespace": "elsewhere",
                                                    "origin_name": "x",
                                                    "origin_uid": "00000000-0000-4000-8000-000000000002"},
    }
    for stranger, origin in strangers.items():
        r.hset(f"hz:job:{stranger}", mapping={"status": "PROGRESS", "phase": "rewriting", "total": 1, "done": 0,
                                              "created_at": time.time(), **origin})
        r.zadd("hz:active", {stranger: time.time()})

    op.stop()
    kubectl("delete", "hj", "orphan", "-n", namespace, "--wait=true", "--timeout=20s", timeout=40)
    store = store_for(be)
    time.sleep(1)
    before = store.view(job_id, with_result=False)
    assert not before.status.terminal, "cancelled with no operator running?"
    launched = time.monotonic()
    op.start()
    restarted = time.monotonic()
    wait_until(lambda: store.view(job_id, with_result=False).status.value == "CANCELLED", 10,
               f"the orphaned job {job_id} to be cancelled\n{op.logs()[-3000:]}", interval=0.1)
    cancelled = time.monotonic()
    after = store.view(job_id, with_result=False)
    assert after.progress.completed < after.progress.total
    print(f"orphan cancelled {cancelled - launched:.1f}s after the operator process started, "
          f"{cancelled - restarted:.1f}s after its liveness endpoint answered ({before.progress.completed}/"
          f"{before.progress.total} chunks done before, {after.progress.completed} when cancelled)")
    status = wait_phase(api_client, namespace, "bystander", {"Succeeded", "Failed", "Cancelled"}, 120, op)
    assert status["phase"] == "Succeeded", status
    for stranger in strangers:
        assert r.hget(f"hz:job:{stranger}", "status") == "PROGRESS", stranger
        r.zrem("hz:active", stranger)


@contextlib.contextmanager
def crd_without_the_name_rule(kubectl: Kubectl, namespace: str) -> Iterator[None]:
    """The CRD as earlier releases had it, without the rule that refuses names over 246 characters (Helm
    installs CRDs once and never upgrades them, so clusters keep such a CRD); the current one after."""
    # a server-side dry run of a new object (never created: updates of existing ones are ratcheted)
    probe = humanizejob(".".join(["probe" + "x" * 56] * 4), {"input": {"text": "probe"}})
    crd = yaml.safe_load(CRD_PATH.read_text())
    for version in crd["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        root["x-kubernetes-validations"] = [
            r for r in root.get("x-kubernetes-validations", []) if "metadata.name" not in r["rule"]
        ]
        if not root["x-kubernetes-validations"]:
            del root["x-kubernetes-validations"]

    def accepted() -> bool:
        return kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(probe),
                       check=False).returncode == 0

    kubectl.apply(crd)
    try:
        wait_until(accepted, 30, "the API server to serve the CRD without the name rule")
        yield
    finally:
        install_crd(kubectl)
        wait_until(lambda: not accepted(), 30, "the API server to serve the current CRD again")


def test_job_name_too_long_for_the_default_output_fails_clearly(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, core_v1: client.CoreV1Api,
    kubectl: Kubectl, namespace: str,
) -> None:
    """A 247-character name makes ``<name>-output`` 254 characters, no valid ConfigMap name. The CRD
    refuses such a job; where the CRD is older (no such rule), the job ends Failed with a condition that
    says so (before any chunk is rewritten) and stays so (no retry loop on a 422). The same long name with
    spec.output.configMapName succeeds (a name over 63 characters is no valid label value, so that output
    carries no job label)."""
    be, op, _ = stack
    label = "x" * 57
    long_name = ".".join([f"long{label}"] * 4)
    named_name = ".".join([f"name{label}"] * 4)
    assert len(long_name) == len(named_name) == 247
    too_long = humanizejob(long_name, {"input": {"text": document(2)}})
    refused = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(too_long), check=False)
    assert refused.returncode != 0 and "at most 246 characters" in refused.stderr, refused.stderr
    with crd_without_the_name_rule(kubectl, namespace):
        kubectl.apply(too_long, namespace=namespace)
        kubectl.apply(humanizejob(named_name, {"input": {"text": document(2)},
                                               "output": {"configMapName": "named-out"}}), namespace=namespace)
        status = wait_phase(api_client, namespace, long_name, {"Failed", "Succeeded"}, 30, op)
        assert status["phase"] == "Failed", status
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "InvalidOutputName", failed
        assert f"{long_name}-output" in failed["message"] and "254 characters" in failed["message"], failed
        assert "at most 246" in failed["message"] and "spec.output.configMapName" in failed["message"], failed
        assert "jobId" not in status
        named = wait_phase(api_client, namespace, named_name, {"Failed", "Succeeded"}, 60, op)
        assert named["phase"] == "Succeeded", named
        cm = core_v1.read_namespaced_config_map("named-out", namespace)
        assert cm.data["text"].strip() and cm.metadata.owner_references[0].name == named_name
        assert "humanizer.dev/job" not in (cm.metadata.labels or {})
        time.sleep(3)  # three passes of the status loop: nothing more happens to the failed job
        assert hj_status(api_client, namespace, long_name) == status
        assert be.redis_client().zcard("hz:jobs") == 1  # only the second job was submitted
        logs = op.logs()
        assert "Unprocessable" not in logs and "status pass of HumanizeJob" not in logs, logs[-3000:]


def test_finalizers_left_by_earlier_versions_are_removed(
    stack: tuple[Backend, OperatorProcess, PodHarness], api_client: client.ApiClient, kubectl: Kubectl,
    namespace: str,
) -> None:
    """An upgrade from a version that put ``humanizer.dev/operator`` on HumanizeJobs: the operator removes
    it (and only it) from every object, so one deleted meanwhile (Terminating) goes away."""
    _, op, _ = stack
    op.stop()
    legacy = "humanizer.dev/operator"
    for name, finalizers in (("old", [legacy, "example.com/keep"]), ("stuck", [legacy])):
        obj = humanizejob(name, {"input": {"text": document(2)}})
        obj["metadata"]["finalizers"] = finalizers
        kubectl.apply(obj, namespace=namespace)
    kubectl("delete", "hj", "stuck", "-n", namespace, "--wait=false")
    stuck = get_hj(api_client, namespace, "stuck")
    assert stuck is not None and stuck["metadata"].get("deletionTimestamp"), stuck
    try:
        op.start()
        wait_until(lambda: get_hj(api_client, namespace, "stuck") is None, 15,
                   f"the Terminating HumanizeJob to go\n{op.logs()[-3000:]}")

        def only_foreign_left() -> bool:
            obj = get_hj(api_client, namespace, "old")
            return obj is not None and obj["metadata"].get("finalizers") == ["example.com/keep"]

        wait_until(only_foreign_left, 15, "the legacy finalizer to be removed, the other one kept")
        status = wait_phase(api_client, namespace, "old", {"Succeeded", "Failed"}, 60, op)
        assert status["phase"] == "Succeeded", status
    finally:
        kubectl("patch", "hj", "old", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                check=False)
