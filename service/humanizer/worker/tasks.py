"""The three Celery tasks: ``humanize_batch`` (fan-out), ``merge`` (chord callback) and ``verify``.

Every task is idempotent, so at-least-once delivery (acks_late, redelivery after a lost worker) can
never change or double a result:

- ``humanize_batch`` rewrites a few chunks of one job (``HUMANIZER_BATCH_SIZE``), all at once on the
  process's event loop (``worker/engine.py``). Each chunk's output is stored first-writer-wins as soon as
  it arrives, and chunks whose output exists are skipped, so a redelivered or retried batch only calls the
  provider for what is still missing. Retryable failures retry the batch (countdown: the largest of its
  chunks' backoffs, Retry-After honoured); a chunk that failed for good is dead-lettered and the task
  returns, so the chord's callback still runs and can say precisely what failed.
- ``merge`` reads outputs by index from Redis (not from the chord's result list), checks that all N
  chunks are there exactly once, and writes the document first-writer-wins.
- ``verify`` recomputes the same report from the same stored data.

Celery results are not stored (``ignore_result``): everything lives in the job record, and Celery's Redis
chord counting (``on_chord_part_return``) runs either way, so no ``celery-task-meta-*`` key is left behind
per task for the result TTL.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import random
import time
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.signals import worker_ready

from humanizer import metrics
from humanizer.chunking import PlaceholderError, mask, unmask
from humanizer.config import Settings, get_settings
from humanizer.jobs import assembly
from humanizer.jobs.deadletters import DeadLetters
from humanizer.jobs.models import JobStatus
from humanizer.jobs.store import ChunkOutput, JobNotFound, JobStore
from humanizer.logging import get_logger
from humanizer.pricing import cost_usd
from humanizer.providers import Provider, ProviderError, RewriteRequest, RewriteResult, build_provider
from humanizer.ratelimit import Limits, RateLimiter
from humanizer.redis_client import get_redis
from humanizer.worker import chunk_cache
from humanizer.worker.celery_app import app
from humanizer.worker.engine import CallEngine, get_engine
from humanizer.worker.retry_policy import retry_countdown
from humanizer.worker.writer import get_writer

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
            timeout=min(s.openai_timeout, s.celery_task_soft_time_limit),
            max_retries=s.openai_sdk_max_retries,
        )
    provider = build_provider(name)
    if name == "offline" and s.offline_latency > 0:
        return _Delayed(provider, s.offline_latency)
    return provider


@functools.cache
def _limiter(name: str, model: str) -> RateLimiter:
    s = get_settings()
    keep = 1.0 - s.rate_limit_headroom  # stay a little under the provider's limit: arrival jitter is not ours
    limits = Limits(s.rate_limit_rpm * keep, s.rate_limit_tpm * keep, s.rate_limit_burst_seconds)
    return RateLimiter(get_redis(s), f"{name}:{model}", limits, prefix=s.key_prefix)


class _Delayed:
    """The offline rewriter with a fixed simulated latency (demo only, so the fan-out is visible)."""

    def __init__(self, inner: Provider, seconds: float) -> None:
        self.inner, self.seconds, self.name = inner, seconds, inner.name

    def rewrite(self, request: RewriteRequest) -> RewriteResult:
        time.sleep(self.seconds)
        return self.inner.rewrite(request)

    async def arewrite(self, request: RewriteRequest) -> RewriteResult:
        await asyncio.sleep(self.seconds)
        return self.inner.rewrite(request)


# KEYS: the average ; ARGV: this batch's mean seconds. One round trip instead of a read and a write.
_MOVING_AVERAGE = """
local old = tonumber(redis.call('GET', KEYS[1]))
local value = tonumber(ARGV[1])
if old then value = 0.8 * old + 0.2 * value end
redis.call('SET', KEYS[1], string.format('%.4f', value), 'EX', 86400)
return 1
"""


def _record_chunk_seconds(store: JobStore, seconds: float) -> None:
    """Keep a moving average of chunk time for completion estimates."""
    store.r.eval(_MOVING_AVERAGE, 1, f"{store.prefix}:stats:chunk_seconds", repr(seconds))


def _over_budget(store: JobStore, meta: dict[str, str]) -> str | None:
    used_in, used_out = int(meta.get("tokens_in", 0)), int(meta.get("tokens_out", 0))
    if meta.get("token_budget") and used_in + used_out >= int(meta["token_budget"]):
        return f"token budget {int(meta['token_budget']):,} reached ({used_in + used_out:,} used)"
    if meta.get("max_cost_usd"):
        spent = cost_usd(store.prices, meta.get("model", ""), used_in, used_out)
        if spent >= float(meta["max_cost_usd"]):
            return f"cost budget ${float(meta['max_cost_usd']):.4f} reached (${spent:.4f} spent)"
    return None


@app.task(bind=True, name="humanizer.humanize_batch", acks_late=True, ignore_result=True)
def humanize_batch(self: Task, job_id: str, indices: list[int]) -> dict[str, Any]:
    wait = metrics.queue_wait_seconds(self.request)
    if wait is not None:
        metrics.observe_queue_wait(wait, "humanize")
    return _humanize_batch(self, job_id, [int(i) for i in indices])


@dataclass
class _Call:
    """What happened to one chunk's provider call inside a batch."""

    index: int
    outcome: str  # stored | duplicate | skipped | failed | placeholders
    seconds: float = 0.0
    error: ProviderError | None = None


def _humanize_batch(self: Task, job_id: str, indices: list[int]) -> dict[str, Any]:
    s = get_settings()
    store = get_store(s)
    bound = log.bind(job_id=job_id, task_id=self.request.id)
    summary: dict[str, Any] = {"job_id": job_id, "chunks": len(indices)}
    try:
        meta, todo, chunks = store.batch_state(job_id, indices)  # one round trip
    except JobNotFound:
        bound.warning("batch.job_missing")
        _count(indices, "job_missing")
        return {**summary, "outcome": "job_missing"}
    if meta["status"] in (JobStatus.CANCELLED, JobStatus.FAILURE):
        return _skip(store, job_id, indices, bound, summary, meta["status"].lower())

    if len(todo) < len(indices) and self.request.retries == 0:
        bound.info("batch.duplicate_delivery", already_stored=len(indices) - len(todo))
        _count(indices[: len(indices) - len(todo)], "duplicate")
    if not todo:
        return {**summary, "outcome": "duplicate"}

    starts = store.count_starts(job_id, todo)  # this start included; attempts that reported back are not
    poisoned = [i for i in todo if starts[i] - 1 > s.max_redeliveries]
    for i in poisoned:
        err = ProviderError("invalid_response", f"poison: started {starts[i]} times without finishing")
        _dead_letter(self, store, job_id, i, err, starts[i], kind="poison")
    todo = [i for i in todo if i not in poisoned]
    if meta["status"] == JobStatus.PENDING:
        store.set_status(job_id, JobStatus.STARTED, phase="rewriting")
    budget = _over_budget(store, meta)
    if budget:
        finish(store, job_id, JobStatus.FAILURE, phase="stopped", error=f"stopped: {budget}")
        bound.warning("batch.budget_exhausted")
        return _skip(store, job_id, todo, bound, summary, "budget")

    keys = {i: chunk_cache.cache_key(store.prefix, meta, chunks[i]) for i in todo} if s.chunk_cache_ttl_seconds else {}
    hits = chunk_cache.get_many(store.r, keys)
    if hits:
        store.save_outputs([ChunkOutput(job_id, i, text) for i, text in hits.items()])
        store.incr(job_id, "cache_hits", len(hits))
        _count(list(hits), "cached")
    todo = [i for i in todo if i not in hits]

    engine = get_engine(s.worker_calls)
    calls = engine.run(_call_all(engine, self.request.retries, store, job_id, meta, chunks, keys, todo)) if todo else []
    seconds = [c.seconds for c in calls if c.outcome in ("stored", "duplicate")]
    if seconds:
        _record_chunk_seconds(store, sum(seconds) / len(seconds))
    outcomes = collections.Counter(c.outcome for c in calls)
    bound.info(
        "batch.done", chunks=len(indices), cached=len(hits), poisoned=len(poisoned),
        attempt=self.request.retries + 1, **dict(sorted(outcomes.items())),
    )
    _settle_failures(self, store, job_id, chunks, calls, bound)
    return {**summary, "outcome": "done", **outcomes}


def _skip(
    store: JobStore, job_id: str, indices: list[int], bound: Any, summary: dict[str, Any], reason: str
) -> dict[str, Any]:
    if indices:
        store.incr(job_id, "skipped", len(indices))
    _count(indices, "skipped")
    bound.info("batch.skipped", reason=reason, chunks=len(indices))
    return {**summary, "outcome": "skipped"}


def _count(indices: list[int], outcome: str, seconds: float = 0.0) -> None:
    for _ in indices:
        metrics.observe_chunk(outcome, seconds)


async def _call_all(
    engine: CallEngine, retries: int, store: JobStore, job_id: str, meta: dict[str, str],
    chunks: dict[int, dict[str, Any]], keys: dict[int, str], todo: list[int],
) -> list[_Call]:
    """Run the provider calls of one batch concurrently on the engine's loop, each in one of its slots."""
    return list(await asyncio.gather(
        *(_call_one(engine, retries, store, job_id, meta, i, chunks[i], keys.get(i, "")) for i in todo)
    ))


async def _call_one(
    engine: CallEngine, retries: int, store: JobStore, job_id: str, meta: dict[str, str], index: int,
    chunk: dict[str, Any], key: str,
) -> _Call:
    """One chunk: mask, call the provider in one of the process's call slots, unmask, store.

    The slot is held for the provider call only (rate-limit wait included, so a reserved start is kept);
    storing the output happens after it is released, so the next chunk's call is not held up by Redis."""
    s = get_settings()
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
    provider = _provider(provider_name, model)
    async with engine.slot():
        waited = limiter.reserve(tokens=estimate)
        if limiter.limits.enabled:
            metrics.observe_rate_limit_wait(waited)
        if waited > 0:  # the batch looked at the job's status just before its calls; after a wait, look again
            await asyncio.sleep(waited)
            if store.status(job_id) in (JobStatus.CANCELLED, JobStatus.FAILURE):
                store.incr(job_id, "skipped")
                metrics.observe_chunk("skipped", 0.0)
                return _Call(index, "skipped")
        started = time.monotonic()
        with metrics.task_in_flight("humanize_chunk"):
            try:  # the provider's own timeout is at most the chunk's soft time limit (see _provider)
                result = await provider.arewrite(request)
            except ProviderError as err:
                metrics.observe_provider(err.status_code or err.kind.value, time.monotonic() - started, provider_name)
                return _Call(index, "failed", time.monotonic() - started, err)
    metrics.observe_provider(200, time.monotonic() - started, provider_name)
    metrics.observe_tokens(
        result.input_tokens, result.output_tokens, provider_name, model,
        cost_usd=cost_usd(store.prices, model, result.input_tokens, result.output_tokens),
    )
    limiter.settle(estimate, result.input_tokens + result.output_tokens)
    try:
        output = unmask(result.text, masked.spans)
    except PlaceholderError as err:
        return _Call(index, "placeholders", time.monotonic() - started, ProviderError("invalid_response", str(err)))
    first = await get_writer(store).save(ChunkOutput(
        job_id, index, output, result.input_tokens, result.output_tokens,
        key, s.chunk_cache_ttl_seconds if key else 0,
    ))
    seconds = time.monotonic() - started
    metrics.observe_chunk("stored" if first else "duplicate", seconds)
    log.debug("chunk.done", job_id=job_id, chunk_id=index, stored=first, attempt=retries + 1,
              seconds=round(seconds, 3), tokens_in=result.input_tokens, tokens_out=result.output_tokens)
    return _Call(index, "stored" if first else "duplicate", seconds)


def _settle_failures(
    task: Task, store: JobStore, job_id: str, chunks: dict[int, dict[str, Any]], calls: list[_Call], bound: Any
) -> None:
    """Dead-letter what failed for good; retry the batch (only its missing chunks run again) for the rest."""
    s = get_settings()
    attempts = task.request.retries + 1
    can_retry = task.request.retries < s.celery_task_max_retries
    countdowns: list[float] = []
    retrying: list[int] = []
    for call in calls:
        err = call.error
        if err is None:
            continue
        if call.outcome == "placeholders":
            if can_retry:
                countdowns.append(retry_countdown(0, s.celery_task_retry_delay, 5.0, rng=_rng))
                retrying.append(call.index)
                bound.warning("chunk.placeholders_altered", chunk_id=call.index, attempt=attempts, action="retry")
                continue
            store.r.hset(store.key(job_id, "flags"), str(call.index), str(err))
            store.save_output(job_id, call.index, chunks[call.index]["text"], 0, 0)
            metrics.observe_chunk("kept_original", call.seconds)
            bound.warning("chunk.placeholders_altered", chunk_id=call.index, attempt=attempts, action="kept_original")
        elif err.retryable and can_retry:
            countdowns.append(retry_countdown(
                task.request.retries, s.celery_task_retry_delay, s.celery_task_retry_max_delay, err.retry_after, _rng
            ))
            retrying.append(call.index)
            metrics.count_retry(err.kind.value)
            metrics.observe_chunk("retry", call.seconds)
            bound.warning("chunk.retry", chunk_id=call.index, error_kind=err.kind.value, status_code=err.status_code,
                          attempt=attempts)
        else:
            _dead_letter(task, store, job_id, call.index, err, attempts)
    if countdowns:
        store.count_starts(job_id, retrying, amount=-1)  # these attempts reported back: not poison
        store.incr(job_id, "retries", len(countdowns))
        countdown = max(countdowns)  # honours every Retry-After in the batch
        store.touch(job_id, quiet_for=countdown)  # backing off is progress: the reconciler must not re-drive it
        bound.info("batch.retry", chunks=len(countdowns), countdown=round(countdown, 3), attempt=attempts)
        raise task.retry(countdown=countdown)


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
    metrics.observe_chunk("dead_lettered", 0.0)
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


@app.task(bind=True, name="humanizer.merge", acks_late=True, ignore_result=True)
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


@app.task(bind=True, name="humanizer.verify", acks_late=True, ignore_result=True)
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
