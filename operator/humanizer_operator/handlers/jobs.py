"""HumanizeJob create / resume (deletion: ``handlers/deletion.py``).

Submission is idempotent: the job id is derived from the object's UID (``hj-<uid>``), and a job that
already exists in the store (the operator died after submitting, before recording it) counts as
submitted. If the operator dies between writing the job and sending its chord, the workers'
reconciler re-drives it from Redis (``HUMANIZER_STALL_SECONDS``). The job record keeps the object's
kind, namespace, name and uid (``origin_*`` fields): a job whose object is gone is cancelled.
"""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from humanizer.jobs.models import JobRequest
from humanizer.jobs.options import options_from_spec
from humanizer.jobs.store import JobExists, JobNotFound
from humanizer.jobs.submit import SubmissionError, submit_job
from humanizer.metrics import count_job_submitted
from humanizer.redis_client import RedisUnavailable
from humanizer_operator import k8s, service
from humanizer_operator.status import TERMINAL_PHASES, failed_status

GVR = (k8s.GROUP, k8s.VERSION, k8s.PLURAL)
ORIGIN_KEYS = ("kind", "namespace", "name", "uid")


class InputMissing(Exception):
    """The ConfigMap (or key) named by spec.input.configMapRef does not exist (yet)."""


def job_id_for(uid: str) -> str:
    """The Humanizer job id of a HumanizeJob: stable across operator restarts."""
    return f"hj-{uid}"


def origin_of(body: Any) -> dict[str, str]:
    """What the job record keeps of its HumanizeJob (``submit_job(origin=...)``, ``ORIGIN_KEYS``)."""
    meta = body["metadata"]
    return {"kind": k8s.KIND, "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}


def output_name(body: Any, spec: Any) -> str:
    """The output ConfigMap's name: spec.output.configMapName, else ``<job name>-output``."""
    return str((spec.get("output") or {}).get("configMapName") or f"{body['metadata']['name']}-output")


def output_name_problem(body: Any, spec: Any) -> str | None:
    """Why the output ConfigMap could never be written under its name (None: it can)."""
    name = output_name(body, spec)
    if k8s.is_dns1123_subdomain(name):
        return None
    given = bool((spec.get("output") or {}).get("configMapName"))
    hint = ("choose another spec.output.configMapName" if given else
            f"the default is <job name>-output, so a job name may have at most {253 - len('-output')} "
            "characters: shorten the name or set spec.output.configMapName")
    return (f"the output ConfigMap name {name!r} ({len(name)} characters) is not a valid ConfigMap name "
            f"(at most 253 characters: lower-case letters, digits, '-' and '.'); {hint}")


def read_input(spec: Any, namespace: str) -> str:
    source = spec.get("input", {})
    if source.get("text") is not None:
        return str(source["text"])
    ref = source.get("configMapRef") or {}
    text = k8s.read_configmap_key(namespace, ref.get("name", ""), ref.get("key", ""))
    if text is None:
        raise InputMissing(f"ConfigMap {ref.get('name')!r} has no key {ref.get('key')!r} (or does not exist)")
    return text


def build_request(spec: Any, text: str, job_id: str) -> JobRequest:
    """spec → JobRequest (the same model the HTTP API validates; the spec's fields: ``SPEC_PATHS``)."""
    return JobRequest(text=text, job_id=job_id, **options_from_spec(spec))


def style_of(spec: Any) -> str:
    return "custom" if spec.get("customPrompt") else str(spec.get("style") or service.settings().style)


def submit(body: Any, spec: Any, status: Any, patch: kopf.Patch, logger: Any) -> None:
    """Start the job unless it is suspended; record the job id. Safe to call again (idempotent)."""
    meta = body["metadata"]
    namespace, uid, generation = meta["namespace"], meta["uid"], meta.get("generation")
    conditions = status.get("conditions")
    problem = output_name_problem(body, spec)
    if problem is not None:  # fail before any chunk is rewritten: the result could never be stored
        patch.status.update(failed_status(conditions, "InvalidOutputName", problem, generation))
        patch.status["style"] = style_of(spec)
        kopf.event(body, type="Warning", reason="InvalidOutputName", message=problem)
        logger.warning("HumanizeJob rejected: %s", problem)
        return
    if spec.get("suspend"):
        patch.status["phase"] = "Pending"
        patch.status["style"] = style_of(spec)
        patch.status["conditions"] = k8s.set_condition(
            conditions, "Suspended", True, "JobSuspended", "spec.suspend is true: the job waits", generation
        )
        patch.status["observedGeneration"] = generation
        return
    job_id = job_id_for(uid)
    try:
        request = build_request(spec, read_input(spec, namespace), job_id)
        submitted = submit_job(request, service.settings(), origin=origin_of(body))
        total, message = submitted.total_chunks, f"submitted as job {job_id}: {submitted.total_chunks} chunks"
        count_job_submitted("operator")
    except JobExists:
        total = _known_total(job_id)
        message = f"job {job_id} was already submitted (operator restart)"
    except InputMissing as exc:
        patch.status["phase"] = "Pending"
        patch.status["conditions"] = k8s.set_condition(
            conditions, "Submitted", False, "InputNotFound", str(exc), generation
        )
        raise kopf.TemporaryError(str(exc), delay=10) from None
    except RedisUnavailable as exc:
        raise kopf.TemporaryError(f"cannot submit yet: {exc}", delay=5) from None
    except (SubmissionError, ValidationError) as exc:
        reason = _one_line(exc)
        patch.status.update(failed_status(conditions, "InvalidSpec", reason, generation))
        patch.status["style"] = style_of(spec)
        kopf.event(body, type="Warning", reason="InvalidSpec", message=reason)
        logger.warning("HumanizeJob rejected: %s", reason)
        return
    now = k8s.rfc3339()
    patch.status.update(
        phase="Running", jobId=job_id, style=style_of(spec), startTime=status.get("startTime") or now,
        progress={"done": 0, "failed": 0, "total": total, "summary": f"0/{total}"},
        observedGeneration=generation,
    )
    cond = k8s.set_condition(conditions, "Submitted", True, "JobSubmitted", message, generation, now)
    if k8s.get_condition(cond, "Suspended") is not None:
        cond = k8s.set_condition(cond, "Suspended", False, "JobResumed", "spec.suspend is false", generation, now)
    patch.status["conditions"] = cond
    kopf.event(body, type="Normal", reason="Started", message=message)
    logger.info("HumanizeJob %s", message)


def _known_total(job_id: str) -> int:
    try:
        return int(service.store().meta(job_id).get("total", 0))
    except JobNotFound:
        return 0


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@kopf.on.create(*GVR)
def humanizejob_create(body: Any, spec: Any, status: Any, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    submit(body, spec, status, patch, logger)


@kopf.on.resume(*GVR)
def humanizejob_resume(body: Any, spec: Any, status: Any, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    """After an operator restart: submit what was never submitted (the create handler may have died)."""
    if status.get("phase") in TERMINAL_PHASES or status.get("jobId"):
        return
    submit(body, spec, status, patch, logger)
