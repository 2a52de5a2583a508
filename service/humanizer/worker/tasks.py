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
import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from celery import Task
from celery.signals import worker_process_shutdown, worker_ready

from humanizer import metrics
from humanizer.chunking import PlaceholderError, count_tokens, mask, unmask
from humanizer.chunking.sentences import split_in_two
from humanizer.config import Settings, get_settings
from humanizer.jobs import assembly, dispatch
from humanizer.jobs.deadletters import DeadLetters
from humanizer.jobs.models import JobStatus
from humanizer.jobs.store import ChunkOutput, JobNotFound, JobStore
from humanizer.logging import get_logger
from humanizer.monitoring import throughput
from humanizer.pricing import cost_usd
from humanizer.providers import Provider, ProviderError, RewriteRequest, RewriteResult, build_provider
from humanizer.providers.breaker import BreakerConfig, CircuitBreaker
from humanizer.providers.errors import ErrorKind
from humanizer.providers.openai_provider import NO_KEY_PLACEHOLDER
from humanizer.providers.sizing import retry_max_tokens, size_max_tokens
from humanizer.providers.targets import PRIMARY, counts_for_breaker, falls_over, parse_also_on
from humanizer.ratelimit import Limits, RateLimiter
from humanizer.redis_client import get_redis
from humanizer.worker import chunk_cache, second_pass
from humanizer.worker.celery_app import app
from humanizer.worker.engine import CallEngine, get_engine
from humanizer.worker.retry_policy import retry_countdown
from humanizer.worker.writer import get_writer

log = get_logger("humanizer.worker")
_rng = random.Random()


def get_store(settings: Settings | None = None) -> JobStore:
    s = settings or get_settings()
    return _store(s.redis_identity, s.key_prefix, s.result_ttl_seconds, tuple(sorted(s.model_prices.items())))


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


@functools.cache
def _target_provider(name: str) -> Provider:
    """The provider of fallback target ``name`` (HUMANIZER_FALLBACK_TARGETS), one per worker process."""
    s = get_settings()
    t = s.fallback_target(name)
    if t is None:
        raise KeyError(name)
    if t.provider != "openai":
        return build_provider(t.provider)
    if t.api_key_env:
        key = os.environ.get(t.api_key_env) or None  # unset: the call fails as auth (no key configured)
    elif t.base_url:
        key = NO_KEY_PLACEHOLDER  # a self-hosted server: never send OPENAI_API_KEY to another host
    else:
        key = s.openai_api_key.get_secret_value() if s.openai_api_key else None
    return build_provider(
        "openai", api_key=key, base_url=t.base_url, model=t.model or s.openai_model,
        temperature=s.openai_temperature, max_tokens=s.openai_max_tokens,
        timeout=min(t.timeout or s.openai_timeout, s.celery_task_soft_time_limit), max_retries=s.openai_sdk_max_retries,
    )


@functools.cache
def _target_limiter(name: str) -> RateLimiter:
    s = get_settings()
    t = s.fallback_target(name)
    keep = 1.0 - s.rate_limit_headroom
    limits = Limits((t.rpm if t else 0.0) * keep, (t.tpm if t else 0.0) * keep, s.rate_limit_burst_seconds)
    return RateLimiter(get_redis(s), f"target:{name}", limits, prefix=s.key_prefix)


def _on_breaker(target: str, old: str, new: str) -> None:
    metrics.observe_breaker(target, new)
    log.warning("breaker.transition", target=target, from_state=old, to_state=new)


@functools.cache
def _breaker(target: str, key_id: str, timeout: float) -> CircuitBreaker:
    s = get_settings()
    cfg = BreakerConfig(s.breaker_failures, s.breaker_cooldown_seconds, probe_lease=timeout + 5.0)
    return CircuitBreaker(get_redis(s), target, key_id, cfg, prefix=s.key_prefix, on_transition=_on_breaker)


_Figures = collections.defaultdict[str, float]  # one target's figures in a batch: calls, err.<kind>, seconds...


def _new_figures() -> collections.defaultdict[str, _Figures]:
    return collections.defaultdict(lambda: collections.defaultdict(float))


@dataclass(frozen=True)
class _Hop:
    """One target of a job's chain, as this worker calls it."""

    name: str
    provider_name: str
    model: str  # "" for the primary: the request carries the job's model (or none)
    provider: Provider
    limiter: RateLimiter
    prices: Mapping[str, tuple[float, float]]
    breaker: CircuitBreaker | None


def _chain(store: JobStore, meta: dict[str, str]) -> list[_Hop]:
    """The job's chain: its primary, then the fallback targets it names that this worker knows."""
    s = get_settings()
    provider_name, model = meta.get("provider") or s.provider, meta.get("model") or s.openai_model
    entries = json.loads(meta["chain"]) if meta.get("chain") else []
    with_breakers = len(entries) > 1 and s.breaker_failures > 0
    timeout = min(s.openai_timeout, s.celery_task_soft_time_limit)
    breaker = _breaker(PRIMARY, f"{PRIMARY}:{provider_name}:{model}", timeout) if with_breakers else None
    hops = [_Hop(PRIMARY, provider_name, "", _provider(provider_name, model), _limiter(provider_name, model),
                 store.prices, breaker)]
    for entry in entries[1:]:
        t = s.fallback_target(str(entry.get("name")))
        if t is None:
            log.warning("chain.unknown_target", target=_safe_name(entry.get("name")))
            continue
        prices = {entry["model"]: tuple(entry["price"])} if entry.get("price") else store.prices
        t_timeout = min(t.timeout or s.openai_timeout, s.celery_task_soft_time_limit)
        hops.append(_Hop(
            t.name, t.provider, str(entry.get("model") or ""), _target_provider(t.name), _target_limiter(t.name),
            prices, _breaker(t.name, t.name, t_timeout) if with_breakers else None,
        ))
    return hops


def _safe_name(value: object) -> str:
    text = str(value)
    return text if text.replace("_", "").isalnum() and len(text) <= 40 else "?"


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


def _over_budget(store: JobStore, meta: dict[str, str], job_id: str = "") -> str | None:
    used_in, used_out = int(meta.get("tokens_in", 0)), int(meta.get("tokens_out", 0))
    if meta.get("token_budget") and used_in + used_out >= int(meta["token_budget"]):
        return f"token budget {int(meta['token_budget']):,} reached ({used_in + used_out:,} used)"
    if meta.get("max_cost_usd"):
        targets = store.target_figures(job_id, meta) if job_id and meta.get("chain") else None
        spent = store.job_cost(meta, targets)
        if spent >= float(meta["max_cost_usd"]):
            return f"cost budget ${float(meta['max_cost_usd']):.4f} reached (${spent:.4f} spent)"
    return None


@app.task(bind=True, name="humanizer.humanize_batch", acks_late=True, ignore_result=True)
def humanize_batch(self: Task, job_id: str, indices: list[int]) -> dict[str, Any]:
    wait = metrics.queue_wait_seconds(self.request)
    if wait is not None:
        metrics.observe_queue_wait(wait, "humanize")
    outcome = _humanize_batch(self, job_id, [int(i) for i in indices])  # a retry raises: not finished
    dispatch.batch_finished(job_id, str(self.request.id))  # the job's last batch sends its merge
    return outcome


@dataclass
class _Call:
    """What happened to one chunk's provider call inside a batch."""

    index: int
    outcome: str  # stored | duplicate | skipped | failed | placeholders | truncated
    seconds: float = 0.0
    error: ProviderError | None = None
    tokens_in: int = 0  # tokens paid for by calls whose reply was not stored (truncated, then failed)
    tokens_out: int = 0
    target: str = PRIMARY  # the target that served it, or the last one tried
    can_retry: bool | None = None  # chains: whether the chunk has retries left on its target (None: the batch's)
    tries_on_target: int | None = None  # chains: retries spent on its current target (the backoff exponent)
    route: tuple[int, int] | None = None  # chains: the chunk's new place in the chain, when it moved


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
    budget = _over_budget(store, meta, job_id)
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
    chain = _chain(store, meta)
    routes = store.routes(job_id, todo) if len(chain) > 1 else {}
    figures: dict[str, _Figures] = _new_figures()
    calls = engine.run(_call_all(
        engine, self.request.retries, store, job_id, meta, chunks, keys, todo, chain, routes, figures,
    )) if todo else []
    if len(chain) > 1 and calls:
        store.record_targets(
            job_id, figures, {c.index: c.target for c in calls if c.outcome == "stored"},
            {c.index: c.route for c in calls if c.route is not None},
        )
    seconds = [c.seconds for c in calls if c.outcome in ("stored", "duplicate")]
    if seconds:
        _record_chunk_seconds(store, sum(seconds) / len(seconds))
    outcomes = collections.Counter(c.outcome for c in calls)
    bound.info(
        "batch.done", chunks=len(indices), cached=len(hits), poisoned=len(poisoned),
        attempt=self.request.retries + 1, **dict(sorted(outcomes.items())),
    )
    throughput.record_chunks(store.r, store.prefix, ok=outcomes["stored"] + len(hits))  # humanizer monitor
    _settle_failures(self, store, job_id, chunks, calls, bound, len(chain))
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
    chunks: dict[int, dict[str, Any]], keys: dict[int, str], todo: list[int], chain: list[_Hop] | None = None,
    routes: dict[int, tuple[int, int]] | None = None, figures: dict[str, _Figures] | None = None,
) -> list[_Call]:
    """Run the provider calls of one batch concurrently on the engine's loop, each in one of its slots."""
    chain = chain or _chain(store, meta)
    routes = routes or {}
    figures = figures if figures is not None else _new_figures()
    return list(await asyncio.gather(
        *(_call_one(engine, retries, store, job_id, meta, i, chunks[i], keys.get(i, ""), chain, routes.get(i),
                    figures) for i in todo)
    ))


class _JobEnded(Exception):
    """The job was cancelled or stopped while a chunk waited for a rate-limit slot."""


class _BreakerOpen(Exception):
    """The target's circuit breaker is open (or half-open with its probe out): the call was not made."""


class _Truncated(Exception):
    """Every attempt at a chunk was cut off at max_tokens (the message says how; it carries no text)."""


@dataclass
class _Caller:
    """Makes one chunk's provider calls (one, or more when a reply is truncated) and adds up their tokens."""

    engine: CallEngine
    store: JobStore
    job_id: str
    provider: Provider
    provider_name: str
    model: str
    limiter: RateLimiter
    tokens_in: int = 0
    tokens_out: int = 0
    target: str = PRIMARY
    figures: _Figures | None = None  # this target's figures in the batch (chains only)
    prices: Mapping[str, tuple[float, float]] | None = None  # default: the store's price table
    breaker: CircuitBreaker | None = None  # the target's (chains only)
    admitted: bool = False  # the breaker let this chunk's calls through

    def _count(self, seconds: float, kind: str | None = None) -> None:
        if self.figures is not None:
            self.figures["calls"] += 1
            self.figures["seconds"] += seconds
            if kind is not None:
                self.figures[f"err.{kind}"] += 1

    async def __call__(self, request: RewriteRequest, tokens: int) -> RewriteResult:
        """One provider call in one of the process's call slots. The slot is held for the call only
        (rate-limit wait included, so a reserved start is kept); storing the output happens after it is
        released, so the next chunk's call is not held up by Redis."""
        estimate = tokens * 2 + 200
        async with self.engine.slot(self.job_id):
            # the breaker is asked once per chunk and target, when the call is about to go (not before its
            # wait for a slot: it may have opened meanwhile); a half-open breaker admits this chunk as its probe
            if self.breaker is not None and not self.admitted:
                if not self.breaker.allow():
                    raise _BreakerOpen
                self.admitted = True
            waited = self.limiter.reserve(tokens=estimate)
            if self.limiter.limits.enabled:
                metrics.observe_rate_limit_wait(waited)
            if waited > 0:  # the batch looked at the job's status just before its calls; after a wait, look again
                await asyncio.sleep(waited)
                if self.store.status(self.job_id) in (JobStatus.CANCELLED, JobStatus.FAILURE):
                    raise _JobEnded
            started = time.monotonic()
            with metrics.task_in_flight("humanize_chunk"):
                try:  # the provider's own timeout is at most the chunk's soft time limit (see _provider)
                    result = await self.provider.arewrite(request)
                except ProviderError as err:
                    status = err.status_code or err.kind.value
                    seconds = time.monotonic() - started
                    metrics.observe_provider(status, seconds, self.provider_name, self.target)
                    self._count(seconds, err.kind.value)
                    raise
        seconds = time.monotonic() - started
        metrics.observe_provider(200, seconds, self.provider_name, self.target)
        prices = self.store.prices if self.prices is None else self.prices
        metrics.observe_tokens(
            result.input_tokens, result.output_tokens, self.provider_name, self.model,
            cost_usd=cost_usd(prices, self.model, result.input_tokens, result.output_tokens), target=self.target,
        )
        self.limiter.settle(estimate, result.input_tokens + result.output_tokens)
        self.tokens_in += result.input_tokens
        self.tokens_out += result.output_tokens
        self._count(seconds)
        if self.figures is not None:
            self.figures["tokens_in"] += result.input_tokens
            self.figures["tokens_out"] += result.output_tokens
        return result


def _hop_caller(
    engine: CallEngine, store: JobStore, job_id: str, meta: dict[str, str], hop: _Hop, figures: dict[str, _Figures],
    chained: bool,
) -> _Caller:
    """A caller for one target of the chunk's chain (its breaker, limiter, prices and figures)."""
    model = hop.model or meta.get("model") or get_settings().openai_model
    return _Caller(engine, store, job_id, hop.provider, hop.provider_name, model, hop.limiter, target=hop.name,
                   figures=figures[hop.name] if chained else None, prices=hop.prices, breaker=hop.breaker)


def _for_hop(request: RewriteRequest, position: int, hop: _Hop) -> RewriteRequest:
    """The request as ``hop`` gets it: the primary the job's model, a fallback target its own."""
    return request if position == 0 else replace(request, model=hop.model or None)


@dataclass
class _SecondPassCall:
    """The call a chunk's second pass makes (``second_pass.improve`` calls it as ``call(request, tokens)``):
    through the job's chain like the chunk's first call, starting at the target that served that call.
    Each target is asked its circuit breaker again, counted in its figures (calls, errors, tokens, cost,
    and ``second_passes``) and in the metrics under its ``target`` label, and its breaker hears how the
    call went. An error that falls over (``targets.falls_over``, at once: a second pass is never retried)
    or an open breaker moves it to the next target; any other error, or the end of the chain, raises
    (``improve`` then keeps the first rewrite)."""

    engine: CallEngine
    store: JobStore
    job_id: str
    meta: dict[str, str]
    chain: list[_Hop]
    start: int  # position of the target that served the first call
    figures: dict[str, _Figures]
    also_on: tuple[str, ...] = ()
    index: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    served: str | None = None  # the target that answered

    async def __call__(self, request: RewriteRequest, tokens: int) -> RewriteResult:
        chained = len(self.chain) > 1
        p = self.start
        while True:
            hop = self.chain[p]
            call = _hop_caller(self.engine, self.store, self.job_id, self.meta, hop, self.figures, chained)
            try:
                result = await call(_for_hop(request, p, hop), tokens)
            except _BreakerOpen:
                self.figures[hop.name]["skipped"] += 1
                if p + 1 >= len(self.chain):
                    raise ProviderError(ErrorKind.SERVER_ERROR,
                                        "every remaining target of the chain has its circuit open") from None
                metrics.count_fallover(hop.name, "breaker_open")
                p += 1
                continue
            except ProviderError as err:
                if not chained:
                    raise
                if hop.breaker is not None and counts_for_breaker(err, self.also_on):
                    hop.breaker.record(False)
                if falls_over(err, self.also_on) is None or p + 1 >= len(self.chain):
                    raise
                self.figures[hop.name]["fallovers"] += 1
                metrics.count_fallover(hop.name, err.kind.value)
                log.info("chunk.second_pass_fallover", job_id=self.job_id, chunk_id=self.index,
                         from_target=hop.name, to_target=self.chain[p + 1].name, error_kind=err.kind.value)
                p += 1
                continue
            if hop.breaker is not None:
                hop.breaker.record(True)
            self.tokens_in += call.tokens_in
            self.tokens_out += call.tokens_out
            if chained:
                f = self.figures[hop.name]
                f["sp_calls"] += 1
                f["sp_tokens_in"] += call.tokens_in
                f["sp_tokens_out"] += call.tokens_out
            self.served = hop.name
            return result


async def _complete_rewrite(call: _Caller, request: RewriteRequest, tokens: int, cap: int) -> tuple[str, str]:
    """The chunk's rewrite, never a truncated one: a reply cut off at ``max_tokens`` (finish_reason
    ``length``) is retried once with a larger ``max_tokens`` sized from the chunk, then the chunk is cut in
    two at a paragraph or sentence boundary and each half is rewritten on its own. Returns the (masked)
    text and how it was obtained (``first``, ``retry`` or ``split``); raises ``_Truncated`` when even that
    was cut off, ``ProviderError`` or ``_JobEnded`` from a call."""
    first = request.max_tokens or cap
    result = await call(request, tokens)
    if not result.truncated:
        return result.text, "first"
    tried = [str(first)]
    bigger = retry_max_tokens(tokens, cap, first)
    if bigger is not None:
        result = await call(replace(request, max_tokens=bigger), tokens)
        if not result.truncated:
            return result.text, "retry"
        tried.append(str(bigger))
    reason = f"the model's reply was cut off at max_tokens (finish_reason length) with max_tokens {', '.join(tried)}"
    parts = split_in_two(request.text)
    if parts is None:
        raise _Truncated(f"{reason}; a single sentence cannot be split")
    left, gap, right = parts
    sizes = [count_tokens(left), count_tokens(right)]
    halves = [
        replace(request, text=left, context_after=None, max_tokens=retry_max_tokens(sizes[0], cap, 0) or cap),
        replace(request, text=right, context_before=None, max_tokens=retry_max_tokens(sizes[1], cap, 0) or cap),
    ]
    outcomes = await asyncio.gather(*(call(h, n) for h, n in zip(halves, sizes, strict=True)), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    results = [o for o in outcomes if isinstance(o, RewriteResult)]
    if any(r.truncated for r in results):
        shown = "/".join(str(h.max_tokens) for h in halves)
        raise _Truncated(f"{reason}, and again after splitting it in two (max_tokens {shown})")
    return results[0].text + gap + results[1].text, "split"


async def _call_one(
    engine: CallEngine, retries: int, store: JobStore, job_id: str, meta: dict[str, str], index: int,
    chunk: dict[str, Any], key: str, chain: list[_Hop] | None = None, route: tuple[int, int] | None = None,
    figures: dict[str, _Figures] | None = None,
) -> _Call:
    """One chunk: mask, call its target (``_complete_rewrite``), unmask, store.

    With a fallback chain the chunk starts at its place in the chain (``route``: position, and the batch
    attempt at which it got there; the primary at attempt 0 by default). A target whose breaker is open
    is skipped for this attempt; an error that falls over (``targets.falls_over``) moves the chunk to the
    next target at once, or once its retries on this target are spent, and that target is called in
    this same attempt."""
    s = get_settings()
    chain = chain or _chain(store, meta)
    figures = figures if figures is not None else _new_figures()
    masked = mask(chunk["text"])
    tokens = int(chunk.get("tokens") or 0)
    if masked.spans or not tokens:  # what the model sees and must give back: the masked text
        tokens = count_tokens(masked.text)
    cap = int(meta["max_tokens"]) if meta.get("max_tokens") else s.openai_max_tokens
    request = RewriteRequest(
        text=masked.text,
        style=meta.get("style") or s.style,
        custom_prompt=meta.get("custom_prompt") or None,
        context_before=chunk.get("context_before") or None,
        context_after=chunk.get("context_after") or None,
        model=meta.get("model") or None,
        temperature=float(meta["temperature"]) if meta.get("temperature") else None,
        max_tokens=size_max_tokens(tokens, cap, s.max_tokens_ratio, s.max_tokens_margin),
    )
    chained = len(chain) > 1
    also_on = parse_also_on(meta.get("fallback_also_on") or "") if chained else ()
    pos, arrived = route if route is not None and 0 <= route[0] < len(chain) else (0, 0)
    moved: tuple[int, int] | None = None
    spent_in = spent_out = 0
    started = time.monotonic()
    p = pos

    def failed(outcome: str, err: ProviderError | None, hop: _Hop, retry_left: bool | None = None) -> _Call:
        return _Call(index, outcome, time.monotonic() - started, err, spent_in, spent_out, hop.name,
                     retry_left, (retries - arrived) if chained else None, moved)

    while True:
        hop = chain[p]
        call = _hop_caller(engine, store, job_id, meta, hop, figures, chained)
        try:
            text, how = await _complete_rewrite(call, _for_hop(request, p, hop), tokens, cap)
        except _BreakerOpen:
            figures[hop.name]["skipped"] += 1
            if p + 1 < len(chain):
                metrics.count_fallover(hop.name, "breaker_open")
                p += 1
                continue
            wait = min(h.breaker.wait_seconds() for h in chain[pos:] if h.breaker is not None)
            err = ProviderError(ErrorKind.SERVER_ERROR, "every remaining target of the chain has its circuit open",
                                retry_after=wait or None)
            return failed("failed", err, hop, retries - arrived < s.retries_per_target)
        except _JobEnded:
            spent_in, spent_out = spent_in + call.tokens_in, spent_out + call.tokens_out
            store.incr(job_id, "skipped")
            metrics.observe_chunk("skipped", 0.0)
            return _Call(index, "skipped", 0.0, None, spent_in, spent_out, hop.name, route=moved)
        except ProviderError as err:
            spent_in, spent_out = spent_in + call.tokens_in, spent_out + call.tokens_out
            if not chained:
                return failed("failed", err, hop)
            if hop.breaker is not None and counts_for_breaker(err, also_on):
                hop.breaker.record(False)
            mode = falls_over(err, also_on)
            if mode is None:  # the text's or the account's own problem: not another model's business
                return failed("failed", err, hop, False)
            exhausted = mode == "at_once" or retries - arrived >= s.retries_per_target
            if not exhausted:
                return failed("failed", err, hop, True)
            figures[hop.name]["fallovers"] += 1
            if p + 1 >= len(chain):  # the last target: dead-lettered as without a chain
                return failed("failed", err, hop, False)
            metrics.count_fallover(hop.name, err.kind.value)
            log.info("chunk.fallover", job_id=job_id, chunk_id=index, from_target=hop.name,
                     to_target=chain[p + 1].name, error_kind=err.kind.value, attempt=retries + 1)
            p += 1
            pos, arrived = p, retries
            moved = (pos, arrived)
            continue
        except _Truncated as exc:
            spent_in, spent_out = spent_in + call.tokens_in, spent_out + call.tokens_out
            metrics.count_truncated("dead_lettered")
            cut = ProviderError("invalid_response", f"truncated: {exc}")
            return failed("truncated", cut, hop)
        break
    if hop.breaker is not None:
        hop.breaker.record(True)
    if how != "first":
        metrics.count_truncated(f"recovered_by_{how}")
        log.info("chunk.truncated", job_id=job_id, chunk_id=index, recovered_by=how)
    tokens_in, tokens_out = spent_in + call.tokens_in, spent_out + call.tokens_out
    try:
        output = unmask(text, masked.spans)
    except PlaceholderError as err:
        return _Call(index, "placeholders", time.monotonic() - started, ProviderError("invalid_response", str(err)),
                     tokens_in, tokens_out, hop.name, route=moved)
    # at most one more call, naming what to fix, when the rewrite dropped a fact or reads machine-written; it
    # goes through the chain as the first call did, from the target that served it
    onward = _SecondPassCall(engine, store, job_id, meta, chain, p, figures, also_on, index)
    first_output = output
    output = await second_pass.improve(onward, store, job_id, meta, second_pass.FirstRewrite(
        index, chunk["text"], request, tokens, text, output, masked.spans, how, cap))
    tokens_in, tokens_out = tokens_in + onward.tokens_in, tokens_out + onward.tokens_out
    served = onward.served if onward.served is not None and output != first_output else hop.name
    first = await get_writer(store).save(ChunkOutput(
        job_id, index, output, tokens_in, tokens_out,
        key, s.chunk_cache_ttl_seconds if key else 0,
    ))
    seconds = time.monotonic() - started
    if first and chained:
        figures[served]["chunks"] += 1
    metrics.observe_chunk("stored" if first else "duplicate", seconds)
    log.debug("chunk.done", job_id=job_id, chunk_id=index, stored=first, attempt=retries + 1,
              seconds=round(seconds, 3), tokens_in=tokens_in, tokens_out=tokens_out, target=served)
    return _Call(index, "stored" if first else "duplicate", seconds, target=served, route=moved)


def _settle_failures(
    task: Task, store: JobStore, job_id: str, chunks: dict[int, dict[str, Any]], calls: list[_Call], bound: Any,
    chain_length: int = 1,
) -> None:
    """Dead-letter what failed for good; retry the batch (only its missing chunks run again) for the rest.

    In a chain each chunk has its own retries on its current target (``_Call.can_retry``), so the batch
    may run up to (retries + 1) x targets times: Celery's own limit is set to that."""
    s = get_settings()
    attempts = task.request.retries + 1
    can_retry = task.request.retries < s.celery_task_max_retries
    countdowns: list[float] = []
    retrying: list[int] = []
    unstored = [c for c in calls if c.error is not None and c.outcome != "truncated"]  # truncated: kept below
    spent_in, spent_out = sum(c.tokens_in for c in unstored), sum(c.tokens_out for c in unstored)
    if spent_in or spent_out:  # paid for, though nothing was stored: still the job's tokens
        pipe = store.r.pipeline(transaction=False)
        pipe.hincrby(store.key(job_id), "tokens_in", spent_in)
        pipe.hincrby(store.key(job_id), "tokens_out", spent_out)
        pipe.execute()
    for call in calls:
        err = call.error
        if err is None:
            continue
        if call.outcome == "truncated":  # retried and split already (_complete_rewrite): keep the original
            _dead_letter(task, store, job_id, call.index, err, attempts, kind="truncated",
                         kept_text=chunks[call.index]["text"], tokens=(call.tokens_in, call.tokens_out))
        elif call.outcome == "placeholders":
            if can_retry:
                countdowns.append(retry_countdown(0, s.celery_task_retry_delay, 5.0, rng=_rng))
                retrying.append(call.index)
                bound.warning("chunk.placeholders_altered", chunk_id=call.index, attempt=attempts, action="retry")
                continue
            store.r.hset(store.key(job_id, "flags"), str(call.index), str(err))
            store.save_output(job_id, call.index, chunks[call.index]["text"], 0, 0)
            metrics.observe_chunk("kept_original", call.seconds)
            bound.warning("chunk.placeholders_altered", chunk_id=call.index, attempt=attempts, action="kept_original")
        elif err.retryable and (can_retry if call.can_retry is None else call.can_retry):
            tries = task.request.retries if call.tries_on_target is None else call.tries_on_target
            countdowns.append(retry_countdown(
                tries, s.celery_task_retry_delay, s.celery_task_retry_max_delay, err.retry_after, _rng
            ))
            retrying.append(call.index)
            metrics.count_retry(err.kind.value)
            metrics.observe_chunk("retry", call.seconds)
            bound.warning("chunk.retry", chunk_id=call.index, error_kind=err.kind.value, status_code=err.status_code,
                          attempt=attempts)
        else:
            if chain_length > 1:
                err = ProviderError(err.kind, f"on target {call.target}: {err}", err.retry_after, err.status_code)
            _dead_letter(task, store, job_id, call.index, err, attempts)
    if countdowns:
        store.count_starts(job_id, retrying, amount=-1)  # these attempts reported back: not poison
        store.incr(job_id, "retries", len(countdowns))
        countdown = max(countdowns)  # honours every Retry-After in the batch
        store.touch(job_id, quiet_for=countdown)  # backing off is progress: the reconciler must not re-drive it
        bound.info("batch.retry", chunks=len(countdowns), countdown=round(countdown, 3), attempt=attempts)
        most = s.celery_task_max_retries if chain_length <= 1 else (s.retries_per_target + 1) * chain_length
        raise task.retry(countdown=countdown, max_retries=most + 1)  # our checks above decide; this is a backstop


def finish(store: JobStore, job_id: str, status: JobStatus, **fields: Any) -> bool:
    """End a job (if it has not ended) and count it by final state."""
    moved = store.set_status(job_id, status, **fields)
    if moved:
        created = store.r.hget(store.key(job_id), "created_at")
        metrics.observe_job_finished(status.value, time.time() - float(created) if created else None)
    return moved


def _dead_letter(
    task: Task, store: JobStore, job_id: str, index: int, err: ProviderError, attempts: int, kind: str | None = None,
    kept_text: str | None = None, tokens: tuple[int, int] = (0, 0),
) -> dict[str, Any]:
    """Dead-letter a chunk. With ``kept_text`` its original text stays in the document (flagged for the
    verification report) and the job still completes; the entry can be replayed like any other."""
    error_kind = kind or err.kind.value
    reason = "retries exhausted" if err.retryable and kind is None else "permanent error"
    message = f"{reason}: {err}" if kept_text is None else f"{err}; original text kept"
    entry = DeadLetters(store).add(
        job_id, index, task_id=task.request.id, error_kind=error_kind, message=message,
        attempts=attempts, stops_job=err.stops_job, kept_text=kept_text, flag=str(err), tokens=tokens,
    )
    if entry is None:  # a rewrite of this chunk was stored first (a duplicate delivery): nothing failed
        return {"index": index, "outcome": "duplicate"}
    metrics.count_dead_letter(error_kind)
    metrics.observe_chunk("dead_lettered", 0.0)
    throughput.record_chunks(store.r, store.prefix, errors=1)
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
    tells = report.get("tells") or {}
    scores: dict[str, float] = {}
    if tells:
        scores = {"tell_score_before": tells["before"]["score"], "tell_score_after": tells["after"]["score"]}
    log.info("job.verified", job_id=job_id, task_id=self.request.id, passed=passed, **scores)
    if finish(store, job_id, JobStatus.SUCCESS, phase="done", verification_passed=passed, **scores) and scores:
        metrics.observe_tell_scores(scores["tell_score_before"], scores["tell_score_after"])
    return {"job_id": job_id, "passed": passed}


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    port = metrics.start_worker_metrics_server()
    if port:
        log.info("worker.metrics", port=port)
    s = get_settings()
    # build the default provider now (imports the SDK), not inside the first chunk's time budget
    _provider(s.provider, s.openai_model)
    from humanizer.worker.scheduling import SchedulingThread

    # the window counts the threads this worker really runs (--concurrency may differ from the setting)
    threads = getattr(getattr(sender, "controller", None), "concurrency", None) or s.celery_worker_concurrency
    SchedulingThread(get_store(s), s, concurrency=int(threads)).start()
    if s.reconcile_interval_seconds > 0:
        from humanizer.jobs.reconcile import ReconcilerThread

        ReconcilerThread(get_store(s), s.reconcile_interval_seconds, s.stall_seconds).start()


@worker_process_shutdown.connect
def _on_worker_process_shutdown(pid: int | None = None, **_: Any) -> None:
    """Prefork children in Prometheus multiprocess mode: drop the dead child's live gauges."""
    if pid:
        metrics.mark_worker_process_dead(pid)
