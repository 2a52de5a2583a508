"""The HumanizeJob timer: mirror the job record into ``.status``, finish the job, enforce deadlines.

Every ``HUMANIZER_OPERATOR_STATUS_INTERVAL_SECONDS`` (2 s) per object; ``.status`` is patched only
when something changed. On success the output (and the verification summary) goes to a ConfigMap
owned by the job; a finished job is deleted ``ttlSecondsAfterFinished`` after it finished.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import kopf

from humanizer.jobs.models import JobStatus, JobView
from humanizer.jobs.store import JobNotFound
from humanizer.redis_client import RedisUnavailable
from humanizer_operator import k8s, service
from humanizer_operator.handlers.jobs import GVR
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

TEXT_KEY = "text"
VERIFICATION_KEY = "verification.json"


@kopf.timer(*GVR, interval=get_operator_settings().status_interval_seconds, initial_delay=1.0)
def humanizejob_sync(body: Any, spec: Any, status: Any, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    meta = body["metadata"]
    now = time.time()
    if status.get("phase") in TERMINAL_PHASES:
        if ttl_expired(spec, status, now):
            logger.info("ttlSecondsAfterFinished reached: deleting the HumanizeJob")
            # deleted just after this invocation returns: deleting the object from inside its own timer
            # left kopf's finalizer in place (kopf saw the timer still running and never re-checked)
            threading.Timer(
                0.5, k8s.delete_humanizejob, args=(meta["namespace"], meta["name"], meta["uid"])
            ).start()
        return
    job_id = status.get("jobId")
    if not job_id or spec.get("suspend"):
        return
    generation = meta.get("generation")
    conditions = status.get("conditions")
    try:
        view = service.store().view(job_id, with_result=False)
    except RedisUnavailable as exc:
        logger.warning("cannot read job %s: %s", job_id, exc)
        return
    except JobNotFound:
        message = f"job {job_id} is gone from Redis (expired, or Redis lost its data)"
        patch.status.update(failed_status(conditions, "JobLost", message, generation))
        kopf.event(body, type="Warning", reason="JobLost", message=message)
        return

    wanted: dict[str, Any] = {**mirrored(view), "observedGeneration": generation}
    if view.dead_letters > int(status.get("deadLetters") or 0):
        kopf.event(body, type="Warning", reason="DeadLetters", message=f"{view.dead_letters} chunk(s) dead-lettered")

    if not view.status.terminal and deadline_exceeded(spec, status, now):
        service.orchestration().cancel_job(job_id)
        message = f"the job ran longer than activeDeadlineSeconds={spec['activeDeadlineSeconds']}"
        wanted.update(failed_status(conditions, "DeadlineExceeded", message, generation))
        kopf.event(body, type="Warning", reason="DeadlineExceeded", message=message)
    elif view.status == JobStatus.SUCCESS:
        wanted.update(_succeed(body, spec, status, view, logger))
    elif view.status == JobStatus.FAILURE:
        message = view.error or "the job failed"
        wanted.update(failed_status(conditions, "JobFailed", message, generation))
        kopf.event(body, type="Warning", reason="Failed", message=message)
    elif view.status == JobStatus.CANCELLED:
        message = view.error or "cancelled"
        stamp = k8s.rfc3339()
        wanted.update(
            phase=CANCELLED, message=message, completionTime=stamp,
            conditions=k8s.set_condition(conditions, "Failed", True, "Cancelled", message, generation, stamp),
        )
        kopf.event(body, type="Warning", reason="Cancelled", message=message)
    else:
        wanted["phase"] = phase_of(view.status)
        wanted["message"] = view.phase
    for key, value in changed(status, wanted).items():
        patch.status[key] = value


def _succeed(body: Any, spec: Any, status: Any, view: JobView, logger: Any) -> dict[str, Any]:
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
        kopf.event(body, type="Warning", reason="OutputTooLarge", message=message)
        return failed_status(conditions, "OutputTooLarge", message, generation)
    name = (spec.get("output") or {}).get("configMapName") or f"{meta['name']}-output"
    try:
        k8s.write_owned_configmap(meta["namespace"], name, data, body, {k8s.JOB_LABEL: meta["name"]})
    except k8s.OutputConflict as exc:
        kopf.event(body, type="Warning", reason="OutputConflict", message=str(exc))
        return failed_status(conditions, "OutputConflict", str(exc), generation)
    stamp = k8s.rfc3339(view.finished_at)
    passed = None if report is None else bool(report.get("passed"))
    message = f"{view.progress.total} chunks rewritten; output in ConfigMap {name}"
    if passed is not None:
        message += "; verification " + ("passed" if passed else "found issues (see verification.json)")
    out: dict[str, Any] = {
        "phase": SUCCEEDED,
        "message": message,
        "completionTime": stamp,
        "outputRef": {"name": name, "key": TEXT_KEY, **({"verificationKey": VERIFICATION_KEY} if report else {})},
        "conditions": k8s.set_condition(conditions, "Complete", True, "JobSucceeded", message, generation, stamp),
    }
    if passed is not None:
        out["verificationPassed"] = passed
    kopf.event(body, type="Normal", reason="Completed", message=message)
    logger.info("HumanizeJob succeeded: %s", message)
    return out


def _report_json(report: Any) -> str:
    return json.dumps(report, indent=2, sort_keys=True)


__all__ = ["RUNNING", "humanizejob_sync"]
