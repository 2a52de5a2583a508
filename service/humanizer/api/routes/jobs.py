"""/v1/jobs: submit, read, stream, cancel and list jobs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from humanizer import metrics
from humanizer.api import problems as P
from humanizer.api.deps import ApiSettingsDep, PrincipalDep, SettingsDep, StoreDep
from humanizer.api.limits import ActiveJobs, IdempotencyKeys, fingerprint
from humanizer.api.problems import ProblemError, problem_responses
from humanizer.api.schemas import (
    CancelOut,
    JobAccepted,
    JobCreate,
    JobOut,
    JobPage,
    JobResult,
    ProgressOut,
    Timings,
    Tokens,
)
from humanizer.jobs import lifecycle, models
from humanizer.jobs.models import JobStatus, JobView
from humanizer.jobs.store import JobExists, JobNotFound, JobStore
from humanizer.jobs.submit import SubmissionError, TooManyChunks, submit_job
from humanizer.logging import get_logger
from humanizer.redis_client import get_redis

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = get_logger("humanizer.api")

JOB_ID_PATTERN = models.JOB_ID_PATTERN
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, max_length=63, description="the job id")]


def links(job_id: str) -> dict[str, str]:
    base = f"/v1/jobs/{job_id}"
    return {"self": base, "result": f"{base}/result", "events": f"{base}/events"}


def job_out(view: JobView, verification_passed: bool | None = None) -> JobOut:
    p = view.progress
    elapsed = None
    if view.started_at is not None or view.finished_at is not None:
        elapsed = round((view.finished_at or time.time()) - view.created_at, 3)
    return JobOut(
        job_id=view.job_id,
        status=view.status,
        phase=view.phase,
        progress=ProgressOut(done=p.completed, failed=p.failed, skipped=p.skipped, total=p.total,
                             percentage=p.percentage),
        provider=view.provider,
        model=view.model,
        style=view.style,
        timings=Timings(created_at=view.created_at, started_at=view.started_at, finished_at=view.finished_at,
                        elapsed_seconds=elapsed),
        tokens=Tokens(input=view.tokens_in, output=view.tokens_out),
        retries=view.retries,
        dead_letters=view.dead_letters,
        error=view.error,
        verification_passed=verification_passed,
        ai_tell_score=view.ai_tell_score,
        cost_usd=view.cost_usd,
        targets=view.targets,
        second_pass=view.second_pass,
        links=links(view.job_id),
    )


def read_job(store: JobStore, job_id: str) -> JobOut:
    try:
        view = store.view(job_id, with_result=False)
    except JobNotFound:
        raise ProblemError(P.JOB_NOT_FOUND, f"no job {job_id} (unknown, or its results expired)") from None
    raw = store.field(job_id, "verification_passed")
    passed = None if raw in (None, "") else raw in ("1", "True", "true")
    return job_out(view, passed)


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    summary="Submit a document (or pre-split chunks) for rewriting",
    responses={
        202: {"headers": {"Location": {"description": "the job's URL", "schema": {"type": "string"}}}},
        **problem_responses(401, 409, 413, 422, 429, 503),
    },
)
def create_job(
    body: JobCreate,
    response: Response,
    principal: PrincipalDep,
    settings: SettingsDep,
    api: ApiSettingsDep,
    store: StoreDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
               description="repeat a submission safely: the same key (and body) returns the same job"),
    ] = None,
) -> Any:
    limit = min(settings.max_chunks, api.max_chunks or settings.max_chunks)
    if body.chunks is not None and len(body.chunks) > limit:
        raise ProblemError(P.TOO_MANY_CHUNKS, f"{len(body.chunks):,} chunks; the limit is {limit:,} per job")
    try:
        request = body.to_request()
    except ValidationError as exc:
        msg = exc.errors()[0].get("msg", "invalid request") if exc.errors() else "invalid request"
        raise ProblemError(P.VALIDATION, str(msg).removeprefix("Value error, ")) from None
    effective = settings.model_copy(update={"max_chunks": limit}) if limit != settings.max_chunks else settings

    client = get_redis(settings)  # the API's own keys (idempotency, active jobs per token), not job data
    idem = IdempotencyKeys(client, settings.key_prefix, api.idempotency_ttl_seconds)
    fp = fingerprint(body.model_dump(mode="json"))
    if idempotency_key is not None:
        existing = idem.claim(principal.token_id, idempotency_key, fp)
        if existing is not None:
            if existing.fingerprint != fp:
                raise ProblemError(P.IDEMPOTENCY_MISMATCH,
                                   "this Idempotency-Key was used with a different request body")
            if existing.state != "done" or existing.response is None:
                raise ProblemError(P.IDEMPOTENCY_IN_PROGRESS, "the first request with this key is still running",
                                   headers={"Retry-After": "1"})
            replay = existing.response
            return JSONResponse(replay, status_code=202, headers={
                "Location": replay["links"]["self"], "Idempotent-Replayed": "true"})

    active = ActiveJobs(client, settings.key_prefix, store.prefix)
    reservation = active.reserve(principal.token_id, api.max_active_jobs_per_token)
    if reservation is None:
        if idempotency_key is not None:
            idem.forget(principal.token_id, idempotency_key)
        raise ProblemError(
            P.TOO_MANY_ACTIVE_JOBS,
            f"this token already has {api.max_active_jobs_per_token} unfinished jobs; wait for one to end",
            headers={"Retry-After": str(api.retry_after_seconds)},
            limit=api.max_active_jobs_per_token,
        )
    try:
        job = submit_job(request, effective, tenant=f"token:{principal.token_id}")
    except BaseException as exc:
        active.release(principal.token_id, reservation)
        if idempotency_key is not None:
            idem.forget(principal.token_id, idempotency_key)
        if isinstance(exc, JobExists):
            raise ProblemError(P.JOB_EXISTS, f"job {request.job_id} already exists") from None
        if isinstance(exc, SubmissionError):
            kind = P.TOO_MANY_CHUNKS if isinstance(exc, TooManyChunks) else P.SUBMISSION_REJECTED
            raise ProblemError(kind, str(exc)) from None
        if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError):
            # input the shared path refused with a plain ValueError (e.g. an empty pre-split chunk)
            log.warning("api.submission_value_error", error_type=type(exc).__name__)
            raise ProblemError(P.SUBMISSION_REJECTED, str(exc).splitlines()[0][:300]) from None
        raise
    active.commit(principal.token_id, reservation, job.job_id)
    metrics.count_job_submitted("api")
    log.info("api.job_submitted", job_id=job.job_id, chunks=job.total_chunks, token_id=principal.token_id)
    accepted = JobAccepted(
        job_id=job.job_id,
        status=JobStatus.PENDING,
        total_chunks=job.total_chunks,
        model_chunks=job.model_chunks,
        estimated_completion_time=job.estimated_completion_time,
        links=links(job.job_id),
    )
    if idempotency_key is not None:
        idem.complete(principal.token_id, idempotency_key, fp, accepted.model_dump(mode="json"))
    response.headers["Location"] = accepted.links["self"]
    return accepted


@router.get("", response_model=JobPage, summary="Recent jobs, newest first",
            responses=problem_responses(401, 422, 503))
def list_jobs(
    _: PrincipalDep,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobPage:
    items = []
    for job_id in store.list_jobs(offset, limit):
        try:
            items.append(read_job(store, job_id))
        except ProblemError:  # expired since it was listed
            continue
    total = store.job_count()
    return JobPage(items=items, offset=offset, limit=limit, total=total)


@router.get("/{job_id}", response_model=JobOut, summary="Status, progress, timings and tokens of a job",
            responses=problem_responses(401, 404, 422, 503))
def get_job(job_id: JobId, _: PrincipalDep, store: StoreDep) -> JobOut:
    return read_job(store, job_id)


@router.get(
    "/{job_id}/result",
    response_model=JobResult,
    summary="The rewritten document and its verification report",
    responses=problem_responses(401, 404, 409, 422, 503),
)
def get_result(job_id: JobId, _: PrincipalDep, store: StoreDep) -> JobResult:
    try:
        view = store.view(job_id, with_result=True)
    except JobNotFound:
        raise ProblemError(P.JOB_NOT_FOUND, f"no job {job_id} (unknown, or its results expired)") from None
    if view.status == JobStatus.SUCCESS and view.humanized_text is not None:
        return JobResult(job_id=job_id, status=view.status, humanized_text=view.humanized_text,
                         verification=view.verification)
    if view.status == JobStatus.FAILURE:
        raise ProblemError(P.JOB_FAILED, view.error or "the job failed", job_status=view.status.value,
                           error=view.error)
    if view.status == JobStatus.CANCELLED:
        raise ProblemError(P.JOB_CANCELLED, view.error or "the job was cancelled", job_status=view.status.value,
                           error=view.error)
    p = view.progress
    raise ProblemError(
        P.JOB_NOT_FINISHED,
        f"job is {view.status.value} ({view.phase}): {p.completed}/{p.total} chunks done",
        headers={"Retry-After": "1"},
        job_status=view.status.value,
        progress=p.model_dump(),
    )


@router.delete(
    "/{job_id}",
    response_model=CancelOut,
    status_code=202,
    summary="Cancel a job (chunks not yet rewritten are skipped)",
    responses={200: {"model": CancelOut, "description": "the job had already ended"},
               **problem_responses(401, 404, 422, 503)},
)
def cancel_job(job_id: JobId, principal: PrincipalDep, store: StoreDep, response: Response) -> CancelOut:
    try:
        changed = lifecycle.cancel(store, job_id)
        status = store.status(job_id) or JobStatus.CANCELLED
    except JobNotFound:
        raise ProblemError(P.JOB_NOT_FOUND, f"no job {job_id}") from None
    if changed:
        log.info("api.job_cancelled", job_id=job_id, token_id=principal.token_id)
    response.status_code = 202 if changed else 200
    return CancelOut(job_id=job_id, cancelled=changed, status=status)


@router.get(
    "/{job_id}/events",
    summary="Server-sent events: one 'progress' event per change, a final 'end' event",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "an event stream; each event's data is a Job object (JSON); ':' lines are heartbeats",
            # one schema per event (OpenAPI 3.2's SSE convention): its fields as the stream sends them
            "content": {"text/event-stream": {"schema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "event": {"type": "string", "enum": ["progress", "end"]},
                    "data": {"type": "string", "contentMediaType": "application/json",
                             "description": "a Job object (JSON), as GET /v1/jobs/{job_id} returns it"},
                    "id": {"type": "string"},
                    "retry": {"type": "integer"},
                },
            }}},
        },
        **problem_responses(401, 404, 422, 503),
    },
)
async def job_events(
    job_id: JobId, request: Request, _: PrincipalDep, store: StoreDep, api: ApiSettingsDep
) -> EventSourceResponse:
    first = await anyio.to_thread.run_sync(read_job, store, job_id)  # 404 before the stream starts
    return EventSourceResponse(
        _event_stream(request, store, job_id, first, api.sse_poll_seconds),
        ping=api.sse_heartbeat_seconds,
        headers={"Cache-Control": "no-store"},
    )


async def _event_stream(
    request: Request, store: JobStore, job_id: str, first: JobOut, poll: float
) -> AsyncIterator[ServerSentEvent]:
    seq = 0
    last: str | None = None
    current: JobOut | None = first
    while True:
        if current is None:
            try:
                current = await anyio.to_thread.run_sync(read_job, store, job_id)
            except ProblemError as exc:  # the job expired or was deleted while we watched
                yield ServerSentEvent(event="error", data=json.dumps({"detail": exc.detail}), id=str(seq + 1))
                return
        payload = current.model_dump_json()
        if payload != last:
            seq += 1
            last = payload
            ended = current.status.terminal
            yield ServerSentEvent(event="end" if ended else "progress", data=payload, id=str(seq),
                                  retry=2000 if seq == 1 else None)
            if ended:
                return
        if await request.is_disconnected():
            return
        current = None
        await anyio.sleep(poll)
