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
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.signals import worker_ready

from humanizer import metrics
from humanizer.chunking import PlaceholderError, mask, unmask
from humanizer.config import Settings, get_settings
from humanizer.jobs import assembly
from humanizer.jobs.deadletters import DeadLetters
from humanizer.jobs.models import JobStatus
from humanizer.jobs.store import JobNotFound, JobStore
from humanizer.logging import get_logger
from humanizer.pricing import cost_usd
from humanizer.providers import Provider, ProviderError, RewriteRequest, RewriteResult, build_provider
from humanizer.ratelimit import Limits, RateLimiter
from humanizer.redis_client import get_redis
from humanizer.worker import chunk_cache
from humanizer.worker.celery_app import app
from humanizer.worker.retry_policy import retry_countdown

log = get_logger("humanizer.worker")
_rng = random.Random()


def get_store(settings: Settings | None = None) -> JobStore:
    s = settings or get_settings()
    return _store(s.redis_dsn, s.key_prefix, s.result_ttl_seconds, tuple(sorted(s.model_prices.items())))


@functools.cache
def _store(dsn: str, prefix: str, ttl: int, prices: tuple[tuple[str, tuple[float, float]], ...]) -> JobStore:
    return JobStore(get_redis(get_settings()), prefix=prefix, ttl_seconds=ttl, prices=dict(prices))


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


@functools.cache
def _limiter(name: str, model: str) -> RateLimiter:
    s = get_settings()
    limits = Limits(s.rate_limit_rpm, s.rate_limit_tpm, s.rate_limit_burst_seconds)
    return RateLimiter(get_redis(s), f"{name}:{model}", limits, prefix=s.key_prefix)


class _Delayed:
    """The offline rewriter with a fixed simulated latency (demo only, so the fan-out is visible)."""

    def __init__(self, inner: Provider, seconds: float) -> None:
        self.inner, self.seconds, self.name = inner, seconds, inner.name

    def rewrite(self, request: RewriteRequest) -> RewriteResult:
        time.sleep(self.seconds)
        return self.inner.rewrite(request)


def _record_chunk_seconds(store: JobStore, seconds: float) -> None:
    """Keep a moving average of chunk time for completion estimates."""
    key = f"{store.prefix}:stats:chunk_seconds"
    old = store.r.get(key)
    value = seconds if old is None else 0.8 * float(old) + 0.2 * seconds
    store.r.set(key, f"{value:.4f}", ex=24 * 3600)


def _over_budget(store: JobStore, meta: dict[str, str]) -> str | None:
    used_in, used_out = int(meta.get("tokens_in", 0)), int(meta.get("tokens_out", 0))
    if meta.get("token_budget") and used_in + used_out >= int(meta["token_budget"]):
        return f"token budget {int(meta['token_budget']):,} reached ({used_in + used_out:,} used)"
    if meta.get("max_cost_usd"):
        spent = cost_usd(store.prices, meta.get("model", ""), used_in, used_out)
        if spent >= float(meta["max_cost_usd"]):
            return f"cost budget ${float(meta['max_cost_usd']):.4f} reached (${spent:.4f} spent)"
    return None


@app.task(bind=True, name="humanizer.humanize_chunk", acks_late=True)
def humanize_chunk(self: Task, job_id: str, index: int) -> dict[str, Any]:
    wait = metrics.queue_wait_seconds(self.request)
    if wait is not None:
        metrics.observe_queue_wait(wait, "humanize")
    started = time.monotonic()
    outcome = "error"
    try:
        with metrics.task_in_flight("humanize_chunk"):
            result = _humanize_chunk(self, job_id, index)
        outcome = str(result.get("outcome", "stored"))
        return result
    except Retry:
        outcome = "retry"
        raise
    finally:
        metrics.observe_chunk(outcome, time.monotonic() - started)


def _humanize_chunk(self: Task, job_id: str, index: int) -> dict[str, Any]:
    s = get_settings()
    store = get_store(s)
    bound = log.bind(job_id=job_id, chunk_id=index, task_id=self.request.id)
    try:
        meta = store.meta(job_id)
    except JobNotFound:
        bound.warning("chunk.job_missing")
        return {"index": index, "outcome": "job_missing"}
    if meta["status"] in (JobStatus.CANCELLED, JobStatus.FAILURE):
        store.incr(job_id, "skipped")
        bound.info("chunk.skipped", reason=meta["status"].lower())
        return {"index": index, "outcome": "skipped"}
    if store.r.hexists(store.key(job_id, "out"), str(index)):
        bound.info("chunk.duplicate_delivery")
        return {"index": index, "outcome": "duplicate"}

    deliveries = store.count_delivery(job_id, str(self.request.id))
    redeliveries = deliveries - 1 - self.request.retries  # starts of this same message beyond its retries
    if redeliveries > s.max_redeliveries:
        err = ProviderError("invalid_response", f"poison: started {deliveries} times without finishing")
        return _dead_letter(self, store, job_id, index, err, deliveries, kind="poison")
    if meta["status"] == JobStatus.PENDING:
        store.set_status(job_id, JobStatus.STARTED, phase="rewriting")
    budget = _over_budget(store, meta)
    if budget:
        finish(store, job_id, JobStatus.FAILURE, phase="stopped", error=f"stopped: {budget}")
        store.incr(job_id, "skipped")
        bound.warning("chunk.budget_exhausted")
        return {"index": index, "outcome": "skipped"}

    chunk = store.chunk(job_id, index)
    key = chunk_cache.cache_key(store.prefix, meta, chunk) if s.chunk_cache_ttl_seconds else ""
    cached = chunk_cache.get(store.r, key) if key else None
    if cached is not None:
        first = store.save_output(job_id, index, cached, 0, 0)
        store.incr(job_id, "cache_hits")
        bound.info("chunk.done", stored=first, cache="hit")
        return {"index": index, "outcome": "cached"}

    provider_name, model = meta.get("provider") or s.provider, meta.get("model") or s.openai_model
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
    estimate = int(chunk.get("tokens") or 0) * 2 + 200
    limiter = _limiter(provider_name, model)
    waited = limiter.acquire(tokens=estimate)
    if limiter.limits.enabled:
        metrics.observe_rate_limit_wait(waited)
    if waited > 0.5:
        bound.debug("chunk.rate_limited", waited=round(waited, 3))
    provider = _provider(provider_name, model)
    if store.status(job_id) in (JobStatus.CANCELLED, JobStatus.FAILURE):  # last look before spending a call
        store.incr(job_id, "skipped")
        return {"index": index, "outcome": "skipped"}

    started = time.monotonic()
    attempts = self.request.retries + 1
    try:
        result = provider.rewrite(request)
    except SoftTimeLimitExceeded:
        metrics.observe_provider("timeout", time.monotonic() - started, provider_name)
        return _handle_failure(self, store, job_id, index, ProviderError.timeout("chunk soft time limit"), attempts)
    except ProviderError as err:
        metrics.observe_provider(err.status_code or err.kind.value, time.monotonic() - started, provider_name)
        return _handle_failure(self, store, job_id, index, err, attempts)
    metrics.observe_provider(200, time.monotonic() - started, provider_name)
    metrics.observe_tokens(
        result.input_tokens, result.output_tokens, provider_name, model,
        cost_usd=cost_usd(store.prices, model, result.input_tokens, result.output_tokens),
    )
    limiter.settle(estimate, result.input_tokens + result.output_tokens)

    output = chunk["text"]
    try:
        output = unmask(result.text, masked.spans)
    except PlaceholderError as err:
        if self.request.retries < s.celery_task_max_retries:
            store.incr(job_id, "retries")
            bound.warning("chunk.placeholders_altered", attempt=attempts, action="retry")
            raise self.retry(countdown=retry_countdown(0, s.celery_task_retry_delay, 5.0, rng=_rng)) from err
        store.r.hset(store.key(job_id, "flags"), str(index), str(err))
        bound.warning("chunk.placeholders_altered", attempt=attempts, action="kept_original")
    else:
        if key:
            chunk_cache.put(store.r, key, output, s.chunk_cache_ttl_seconds)

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
    if err.retryable and task.request.retries < s.celery_task_max_retries:
        countdown = retry_countdown(
            task.request.retries, s.celery_task_retry_delay, s.celery_task_retry_max_delay, err.retry_after, _rng
        )
        store.incr(job_id, "retries")
        store.touch(job_id)  # retrying is progress: the reconciler must not re-drive a job that backs off
        metrics.count_retry(err.kind.value)
        log.warning(
            "chunk.retry", job_id=job_id, chunk_id=index, task_id=task.request.id, error_kind=err.kind.value,
            status_code=err.status_code, attempt=attempts, countdown=round(countdown, 3),
        )
        raise task.retry(countdown=countdown, exc=err)
    return _dead_letter(task, store, job_id, index, err, attempts)


def finish(store: JobStore, job_id: str, status: JobStatus, **fields: Any) -> bool:
    """End a job (if it has not ended) and count it by final state."""
    moved = store.set_status(job_id, status, **fields)
    if moved:
        created = store.r.hget(store.key(job_id), "created_at")
        metrics.observe_job_finished(status.value, time.time() - float(created) if created else None)
    return moved


def _dead_letter(
    task: Task, store: JobStore, job_id: str, index: int, err: ProviderError, attempts: int, kind: str | None = None
) -> dict[str, Any]:
    error_kind = kind or err.kind.value
    reason = "retries exhausted" if err.retryable and kind is None else "permanent error"
    DeadLetters(store).add(
        job_id, index, task_id=task.request.id, error_kind=error_kind, message=f"{reason}: {err}",
        attempts=attempts, stops_job=err.stops_job,
    )
    metrics.count_dead_letter(error_kind)
    log.error(
        "chunk.dead_lettered", job_id=job_id, chunk_id=index, task_id=task.request.id, error_kind=error_kind,
        status_code=err.status_code, attempts=attempts,
    )
    if err.stops_job:
        finish(
            store, job_id, JobStatus.FAILURE, phase="stopped",
            error=f"stopped: the provider refused the job ({err.kind.value}): {err}",
        )
    return {"index": index, "outcome": "dead_lettered", "error_kind": error_kind}


@app.task(bind=True, name="humanizer.merge", acks_late=True)
def merge(self: Task, job_id: str) -> dict[str, Any]:
    store = get_store()
    outcome = assembly.merge_job(store, job_id)
    if outcome == "failed":
        created = store.r.hget(store.key(job_id), "created_at")
        metrics.observe_job_finished("FAILURE", time.time() - float(created) if created else None)
    log.info("job.merged", job_id=job_id, task_id=self.request.id, outcome=outcome)
    if outcome == "merged":
        if store.meta(job_id).get("verify") in ("1", "True", "true"):
            store.set_fields(job_id, phase="verifying")
            verify.apply_async(args=(job_id,), task_id=f"{job_id}:verify:{self.request.id}", priority=0)
        else:
            finish(store, job_id, JobStatus.SUCCESS, phase="done")
    return {"job_id": job_id, "outcome": outcome}


@app.task(bind=True, name="humanizer.verify", acks_late=True)
def verify(self: Task, job_id: str) -> dict[str, Any]:
    store = get_store()
    report = assembly.verify_job(store, job_id)
    passed = bool(report.get("passed"))
    log.info("job.verified", job_id=job_id, task_id=self.request.id, passed=passed)
    finish(store, job_id, JobStatus.SUCCESS, phase="done", verification_passed=passed)
    return {"job_id": job_id, "passed": passed}


@worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    port = metrics.start_worker_metrics_server()
    if port:
        log.info("worker.metrics", port=port)
    s = get_settings()
    # build the default provider now (imports the SDK), not inside the first chunk's time budget
    _provider(s.provider, s.openai_model)
    if s.reconcile_interval_seconds > 0:
        from humanizer.jobs.reconcile import ReconcilerThread

        ReconcilerThread(get_store(s), s.reconcile_interval_seconds, s.stall_seconds).start()
