"""The status loop: mirror each job record into its HumanizeJob's ``.status``, finish jobs, enforce deadlines.

It is one background task of the operator (started by a kopf startup handler, stopped by a cleanup
handler, like the autoscaler), not a kopf timer per HumanizeJob: kopf puts its finalizer on every object
that has a timer or a daemon, and with the operator gone (``helm uninstall``, the namespace deleted)
such objects stay Terminating forever and block the namespace's deletion. HumanizeJobs carry no
finalizer (deletion: ``handlers/deletion.py``).

Every ``HUMANIZER_OPERATOR_STATUS_INTERVAL_SECONDS`` (2 s) the loop lists the HumanizeJobs of the
watched namespaces (``scope.py``) and, for each:

* removes the finalizer that earlier versions left (``k8s.LEGACY_FINALIZER``), so that upgraded
  installs do not keep blocked objects;
* an object being deleted: cancels its job, nothing more;
* otherwise reads its job record and runs ``sync(object, view)``: the ``.status`` fields that changed
  (``changed()``: nothing is patched when nothing changed), Events, the output ConfigMap (owned by the
  job) on success, ``activeDeadlineSeconds``, and ``ttlSecondsAfterFinished`` (the object is deleted
  that long after it finished). The status subresource gets a merge patch, conditional on the
  object's ``resourceVersion``: a kopf handler (suspend, submit) that changed the object since it was
  listed wins, and the next pass recomputes.

Then it cancels the orphans: unfinished jobs of HumanizeJobs that no longer exist
(``deletion.cancel_orphans``). The first pass runs at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
import redis
from kubernetes.client.exceptions import ApiException

from humanizer.jobs.models import JobStatus, JobView
from humanizer.jobs.store import JobNotFound
from humanizer.redis_client import RedisUnavailable
from humanizer.verification.tells import report_note
from humanizer_operator import k8s, scope, service
from humanizer_operator.background import stop_loop
from humanizer_operator.handlers import deletion
from humanizer_operator.handlers.jobs import output_name
from humanizer_operator.handlers.lifecycle import deadline_exceeded, ttl_expired
from humanizer_operator.settings import get_operator_settings
from humanizer_operator.status import (
    CANCELLED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_PHASES,
    changed,
    failed_status,
    mirrored,
    phase_of,
)

log = logging.getLogger("humanizer_operator.status")

TEXT_KEY = "text"
VERIFICATION_KEY = "verification.json"
WARN_EVERY = 60.0  # seconds between repeats of the same warning (a namespace that cannot be listed)


# ---- one HumanizeJob: (object, view) -> what changes -------------------------------------------
@dataclass
class Sync:
    """What one pass does to one HumanizeJob besides Events and the output ConfigMap."""

    status: dict[str, Any] = field(default_factory=dict)  # the .status fields that changed
    delete: bool = False  # ttlSecondsAfterFinished ran out


def job_to_read(body: Any) -> str | None:
    """The job whose record ``sync`` needs (None: a finished, suspended or not yet submitted object)."""
    status, spec = body.get("status") or {}, body.get("spec") or {}
    if status.get("phase") in TERMINAL_PHASES or spec.get("suspend"):
        return None
    return status.get("jobId") or None


def sync(body: Any, view: JobView | None, now: float | None = None) -> Sync:
    """One pass over one HumanizeJob, given its job record (``view``; None: not in Redis).

    The status is computed from ``view`` and the object's ``.status``; only what differs is returned.
    On the way it posts Events, writes the output ConfigMap when the job succeeded, and cancels a job
    that outlived ``activeDeadlineSeconds``."""
    meta = body["metadata"]
    spec, status = body.get("spec") or {}, body.get("status") or {}
    now = time.time() if now is None else now
    if status.get("phase") in TERMINAL_PHASES:
        return Sync(delete=ttl_expired(spec, status, now))
    job_id = status.get("jobId")
    if not job_id or spec.get("suspend"):
        return Sync()
    generation = meta.get("generation")
    conditions = status.get("conditions")
    if view is None:
        message = f"job {job_id} is gone from Redis (expired, or Redis lost its data)"
        _event(body, "Warning", "JobLost", message)
        return Sync(changed(status, failed_status(conditions, "JobLost", message, generation)))

    wanted: dict[str, Any] = {**mirrored(view), "observedGeneration": generation}
    if view.dead_letters > int(status.get("deadLetters") or 0):
        _event(body, "Warning", "DeadLetters", f"{view.dead_letters} chunk(s) dead-lettered")

    if not view.status.terminal and deadline_exceeded(spec, status, now):
        service.orchestration().cancel_job(job_id)
        message = f"the job ran longer than activeDeadlineSeconds={spec['activeDeadlineSeconds']}"
        wanted.update(failed_status(conditions, "DeadlineExceeded", message, generation))
        _event(body, "Warning", "DeadlineExceeded", message)
    elif view.status == JobStatus.SUCCESS:
        wanted.update(_succeed(body, spec, status, view))
    elif view.status == JobStatus.FAILURE:
        message = view.error or "the job failed"
        wanted.update(failed_status(conditions, "JobFailed", message, generation))
        _event(body, "Warning", "Failed", message)
    elif view.status == JobStatus.CANCELLED:
        message = view.error or "cancelled"
        stamp = k8s.rfc3339()
        wanted.update(
            phase=CANCELLED, message=message, completionTime=stamp,
            conditions=k8s.set_condition(conditions, "Failed", True, "Cancelled", message, generation, stamp),
        )
        _event(body, "Warning", "Cancelled", message)
    else:
        wanted["phase"] = phase_of(view.status)
        wanted["message"] = view.phase
    return Sync(changed(status, wanted))


def _succeed(body: Any, spec: Any, status: Any, view: JobView) -> dict[str, Any]:
    """Write the output ConfigMap; the status fields of a finished job (Succeeded, or Failed)."""
    meta = body["metadata"]
    generation, conditions = meta.get("generation"), status.get("conditions")
    store = service.store()
    text = store.result(view.job_id) or ""
    report = store.report(view.job_id)
    data = {TEXT_KEY: text}
    if report is not None:
        data[VERIFICATION_KEY] = _report_json(report)
    limit = get_operator_settings().max_output_bytes
    size = sum(len(k) + len(v.encode("utf-8")) for k, v in data.items())
    if size > limit and VERIFICATION_KEY in data:
        data[VERIFICATION_KEY] = _report_json({k: v for k, v in report.items() if k != "failed_chunks"}
                                              if report else {})
        size = sum(len(k) + len(v.encode("utf-8")) for k, v in data.items())
    if size > limit:
        message = (
            f"the rewritten document is {size:,} bytes; a ConfigMap holds at most {limit:,} "
            f"(HUMANIZER_OPERATOR_MAX_OUTPUT_BYTES). Read it with `humanizer result {view.job_id}` or the HTTP API."
        )
        _event(body, "Warning", "OutputTooLarge", message)
        return failed_status(conditions, "OutputTooLarge", message, generation)
    name = output_name(body, spec)
    # a label value holds at most 63 characters; a longer job name is found by the owner reference
    labels = {k8s.JOB_LABEL: meta["name"]} if k8s.is_label_value(meta["name"]) else {}
    try:
        k8s.write_owned_configmap(meta["namespace"], name, data, body, labels)
    except k8s.OutputConflict as exc:
        _event(body, "Warning", "OutputConflict", str(exc))
        return failed_status(conditions, "OutputConflict", str(exc), generation)
    except ApiException as exc:
        if exc.status not in (400, 422):  # anything but a refusal (API down, throttled): the next pass retries
            raise
        message = (f"the API server refused the output ConfigMap {name!r}: {k8s.api_message(exc)}. "
                   f"Read the result with `humanizer result {view.job_id}` or the HTTP API.")
        _event(body, "Warning", "OutputRejected", message)
        return failed_status(conditions, "OutputRejected", message, generation)
    stamp = k8s.rfc3339(view.finished_at)
    passed = None if report is None else bool(report.get("passed"))
    message = f"{view.progress.total} chunks rewritten; output in ConfigMap {name}"
    if passed is not None:
        message += "; verification " + ("passed" if passed else "found issues (see verification.json)")
        message += report_note(report)  # "; AI-tell score 46.6 → 15.1"
    out: dict[str, Any] = {
        "phase": SUCCEEDED,
        "message": message,
        "completionTime": stamp,
        "outputRef": {"name": name, "key": TEXT_KEY, **({"verificationKey": VERIFICATION_KEY} if report else {})},
        "conditions": k8s.set_condition(conditions, "Complete", True, "JobSucceeded", message, generation, stamp),
    }
    if passed is not None:
        out["verificationPassed"] = passed
    _event(body, "Normal", "Completed", message)
    log.info("HumanizeJob %s/%s succeeded: %s", meta["namespace"], meta["name"], message)
    return out


def _report_json(report: Any) -> str:
    return json.dumps(report, indent=2, sort_keys=True)


def _event(body: Any, type_: str, reason: str, message: str) -> None:
    try:
        k8s.post_event(body, type_, reason, message)
    except ApiException as exc:
        log.warning("cannot post the %s event of HumanizeJob %s/%s: %s", reason, body["metadata"]["namespace"],
                    body["metadata"]["name"], exc.reason)


# ---- the loop -----------------------------------------------------------------------------------
class StatusLoop:
    """``tick()``: one pass over every HumanizeJob of ``scope``."""

    def __init__(self, where: scope.Scope, interval_seconds: float) -> None:
        self.scope = where
        self.interval_seconds = interval_seconds
        self._warned: dict[str, float] = {}

    def _warn(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -WARN_EVERY) >= WARN_EVERY:
            self._warned[key] = now
            log.warning(message, *args)

    def list_objects(self) -> tuple[list[dict[str, Any]], set[str]]:
        """The HumanizeJobs in scope, and the namespaces whose list failed (Forbidden, ...)."""
        if self.scope.clusterwide:
            return k8s.list_humanizejobs(None), set()
        if self.scope.exact:
            namespaces = list(dict.fromkeys(self.scope.patterns))
        else:
            namespaces = [ns for ns in k8s.list_namespaces() if self.scope.matches(ns)]
        objects: list[dict[str, Any]] = []
        failed: set[str] = set()
        for namespace in namespaces:
            try:
                objects += k8s.list_humanizejobs(namespace)
            except ApiException as exc:
                failed.add(namespace)
                self._warn(f"list:{namespace}", "cannot list the HumanizeJobs of namespace %s: %s %s", namespace,
                           exc.status, exc.reason)
        return objects, failed

    def tick(self) -> None:
        objects, failed = self.list_objects()
        redis_errors: list[str] = []
        for obj in objects:
            meta = obj["metadata"]
            try:
                self.one(obj)
            except (RedisUnavailable, redis.RedisError) as exc:
                redis_errors.append(f"{type(exc).__name__}: {exc}")
            except Exception:
                log.exception("status pass of HumanizeJob %s/%s failed", meta.get("namespace"), meta.get("name"))
        try:
            deletion.cancel_orphans(service.store(), self.scope, {o["metadata"]["uid"] for o in objects}, failed)
        except (RedisUnavailable, redis.RedisError) as exc:
            redis_errors.append(f"{type(exc).__name__}: {exc}")
        if redis_errors:
            self._warn("redis", "cannot read the job records (%d failure(s) this pass): %s", len(redis_errors),
                       redis_errors[0])

    def one(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if k8s.LEGACY_FINALIZER in (meta.get("finalizers") or []) and k8s.remove_finalizer(obj, k8s.LEGACY_FINALIZER):
            log.info("HumanizeJob %s/%s: removed the finalizer %s left by an earlier operator", namespace, name,
                     k8s.LEGACY_FINALIZER)
        if meta.get("deletionTimestamp"):
            deletion.cancel_for(obj, "is being deleted")
            return
        job_id = job_to_read(obj)
        view: JobView | None = None
        if job_id is not None:
            try:
                view = service.store().view(job_id, with_result=False)
            except JobNotFound:
                view = None
        result = sync(obj, view)
        if result.delete:
            log.info("HumanizeJob %s/%s: ttlSecondsAfterFinished reached, deleting it", namespace, name)
            k8s.delete_humanizejob(namespace, name, meta["uid"])
        elif result.status:
            k8s.patch_humanizejob_status(namespace, name, result.status, meta.get("resourceVersion"))


async def run(loop: StatusLoop, stop: asyncio.Event) -> None:
    """Tick every ``interval_seconds`` until ``stop`` is set; errors are logged, never fatal."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            await asyncio.to_thread(loop.tick)
        except Exception:
            log.exception("status pass failed")
        remaining = loop.interval_seconds - (time.monotonic() - started)
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)


@kopf.on.startup()
async def status_loop_start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    # async on purpose: scope.detect reads kopf's command line from click's context (main thread)
    where = scope.detect(settings)
    loop = StatusLoop(where, get_operator_settings().status_interval_seconds)
    memo.status_stop = asyncio.Event()
    memo.status_task = asyncio.create_task(run(loop, memo.status_stop), name="humanizer-status")
    logger.info("status loop: the HumanizeJobs of %s, every %.1fs", where, loop.interval_seconds)


@kopf.on.cleanup()
async def status_loop_stop(memo: kopf.Memo, **_: Any) -> None:
    await stop_loop(memo, "status")


__all__ = ["RUNNING", "StatusLoop", "Sync", "job_to_read", "sync"]
