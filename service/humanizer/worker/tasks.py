"""The three Celery tasks: ``humanize_chunk`` (fan-out), ``merge`` (chord callback) and ``verify``.

Every task is idempotent, so at-least-once delivery (acks_late, redelivery after a lost worker) can
never change or double a result:

- ``humanize_chunk`` stores its output first-writer-wins and skips work whose output already exists;
  it never raises for a chunk that failed for good — it dead-letters the chunk and returns, so the
  chord's callback still runs and can say precisely what failed.
- ``merge`` reads outputs by index from Redis (not from the chord's result list), checks that all N
  chunks are there exactly once, and writes the document first-writer-wins.
- ``verify`` recomputes the same report from the same stored data.
"""

from __future__ import annotations

import functools
import random
import time
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from humanizer.chunking import PlaceholderError, mask, unmask
from humanizer.config import get_settings
from humanizer.jobs import assembly
from humanizer.jobs.deadletters import DeadLetters
from humanizer.jobs.models import JobStatus
from humanizer.jobs.store import JobNotFound, JobStore
from humanizer.logging import get_logger
from humanizer.providers import Provider, ProviderError, RewriteRequest, build_provider
from humanizer.redis_client import get_redis
from humanizer.worker.celery_app import app
from humanizer.worker.retry_policy import retry_countdown

log = get_logger("humanizer.worker")
_rng = random.Random()


def get_store() -> JobStore:
    s = get_settings()
    return JobStore(get_redis(s), prefix=s.key_prefix, ttl_seconds=s.result_ttl_seconds)


@functools.cache
def _provider(name: str, model: str) -> Provider:
    """One provider object per worker process and (provider, model)."""
    s = get_settings()
    if name == "openai":
        return build_provider(
            "openai",
            api_key=s.openai_api_key.get_secret_value() if s.openai_api_key else None,
            base_url=s.openai_base_url,
            model=model,
            temperature=s.openai_temperature,
            max_tokens=s.openai_max_tokens,
            timeout=s.openai_timeout,
            max_retries=s.openai_sdk_max_retries,
        )
    provider = build_provider(name)
    if name == "offline" and s.offline_latency > 0:
        return _Delayed(provider, s.offline_latency)
    return provider


class _Delayed:
    """The offline rewriter with a fixed simulated latency (demo only, so the fan-out is visible)."""

    def __init__(self, inner: Provider, seconds: float) -> None:
        self.inner, self.seconds, self.name = inner, seconds, inner.name

    def rewrite(self, request: RewriteRequest) -> Any:
        time.sleep(self.seconds)
        return self.inner.rewrite(request)


def _record_chunk_seconds(store: JobStore, seconds: float) -> None:
    """Keep a moving average of chunk time for completion estimates."""
    key = f"{store.prefix}:stats:chunk_seconds"
    old = store.r.get(key)
    value = seconds if old is None else 0.8 * float(old) + 0.2 * seconds  # type: ignore[arg-type]
    store.r.set(key, f"{value:.4f}", ex=24 * 3600)


def _stop_reason(status: str) -> str | None:
    if status in (JobStatus.CANCELLED, JobStatus.FAILURE):
        return status.lower()
    return None


@app.task(bind=True, name="humanizer.humanize_chunk", acks_late=True)
def humanize_chunk(self: Task, job_id: str, index: int) -> dict[str, Any]:
    s = get_settings()
    store = get_store()
    bound = log.bind(job_id=job_id, chunk_id=index, task_id=self.request.id)
    try:
        meta = store.meta(job_id)
    except JobNotFound:
        bound.warning("chunk.job_missing")
        return {"index": index, "outcome": "job_missing"}
    stop = _stop_reason(meta["status"])
    if stop:
        store.incr(job_id, "skipped")
        bound.info("chunk.skipped", reason=stop)
        return {"index": index, "outcome": "skipped"}
    if store.r.hexists(store.key(job_id, "out"), str(index)):
        bound.info("chunk.duplicate_delivery")
        return {"index": index, "outcome": "duplicate"}
    if meta["status"] == JobStatus.PENDING:
        store.set_status(job_id, JobStatus.STARTED, phase="rewriting")

    chunk = store.chunk(job_id, index)
    masked = mask(chunk["text"])
    request = RewriteRequest(
        text=masked.text,
        style=meta.get("style") or s.style,
        custom_prompt=meta.get("custom_prompt") or None,
        context_before=chunk.get("context_before") or None,
        context_after=chunk.get("context_after") or None,
        model=meta.get("model") or None,
        temperature=float(meta["temperature"]) if meta.get("temperature") else None,
        max_tokens=int(meta["max_tokens"]) if meta.get("max_tokens") else None,
    )
    provider = _provider(meta.get("provider") or s.provider, meta.get("model") or s.openai_model)
    started = time.monotonic()
    attempts = self.request.retries + 1
    try:
        result = provider.rewrite(request)
    except SoftTimeLimitExceeded:
        err = ProviderError.timeout("chunk exceeded its soft time limit")
        return _handle_failure(self, store, job_id, index, err, attempts)
    except ProviderError as err:
        return _handle_failure(self, store, job_id, index, err, attempts)

    output, placeholder_error = chunk["text"], None
    try:
        output = unmask(result.text, masked.spans)
    except PlaceholderError as err:
        if self.request.retries < s.celery_task_max_retries:
            store.incr(job_id, "retries")
            bound.warning("chunk.placeholders_altered", attempt=attempts, action="retry")
            raise self.retry(countdown=retry_countdown(0, s.celery_task_retry_delay, 5.0, rng=_rng)) from err
        placeholder_error = str(err)
        store.r.hset(store.key(job_id, "flags"), str(index), placeholder_error)
        bound.warning("chunk.placeholders_altered", attempt=attempts, action="kept_original")

    first = store.save_output(job_id, index, output, result.input_tokens, result.output_tokens)
    _record_chunk_seconds(store, time.monotonic() - started)
    bound.info(
        "chunk.done",
        stored=first,
        attempts=attempts,
        seconds=round(time.monotonic() - started, 3),
        tokens_in=result.input_tokens,
        tokens_out=result.output_tokens,
    )
    return {"index": index, "outcome": "stored" if first else "duplicate"}


def _handle_failure(
    task: Task, store: JobStore, job_id: str, index: int, err: ProviderError, attempts: int
) -> dict[str, Any]:
    s = get_settings()
    bound = log.bind(job_id=job_id, chunk_id=index, task_id=task.request.id)
    if err.retryable and task.request.retries < s.celery_task_max_retries:
        countdown = retry_countdown(
            task.request.retries, s.celery_task_retry_delay, s.celery_task_retry_max_delay, err.retry_after, _rng
        )
        store.incr(job_id, "retries")
        bound.warning(
            "chunk.retry", error_kind=err.kind.value, status_code=err.status_code, attempt=attempts,
            countdown=round(countdown, 3),
        )
        raise task.retry(countdown=countdown, exc=err)
    reason = "retries exhausted" if err.retryable else "permanent error"
    DeadLetters(store).add(
        job_id,
        index,
        task_id=task.request.id,
        error_kind=err.kind.value,
        message=f"{reason}: {err}",
        attempts=attempts,
        stops_job=err.stops_job,
    )
    bound.error("chunk.dead_lettered", error_kind=err.kind.value, status_code=err.status_code, attempts=attempts)
    if err.stops_job:
        store.set_status(
            job_id,
            JobStatus.FAILURE,
            phase="stopped",
            error=f"stopped: the provider refused the job ({err.kind.value}): {err}",
        )
    return {"index": index, "outcome": "dead_lettered", "error_kind": err.kind.value}


@app.task(bind=True, name="humanizer.merge", acks_late=True)
def merge(self: Task, job_id: str) -> dict[str, Any]:
    store = get_store()
    bound = log.bind(job_id=job_id, task_id=self.request.id)
    outcome = assembly.merge_job(store, job_id)
    bound.info("job.merged", outcome=outcome)
    if outcome == "merged":
        if store.meta(job_id).get("verify") in ("1", "True", "true"):
            store.set_fields(job_id, phase="verifying")
            verify.apply_async(args=(job_id,), task_id=f"{job_id}:verify")
        else:
            store.set_status(job_id, JobStatus.SUCCESS, phase="done")
    return {"job_id": job_id, "outcome": outcome}


@app.task(bind=True, name="humanizer.verify", acks_late=True)
def verify(self: Task, job_id: str) -> dict[str, Any]:
    store = get_store()
    report = assembly.verify_job(store, job_id)
    passed = bool(report.get("passed"))
    log.info("job.verified", job_id=job_id, task_id=self.request.id, passed=passed)
    store.set_status(job_id, JobStatus.SUCCESS, phase="done", verification_passed=passed)
    return {"job_id": job_id, "passed": passed}
