"""The chunk pipeline of one batch task: read the batch's state, skip what is done, call the provider for
each chunk in one of the process's call slots (through the job's fallback chain, with a second pass where
it pays), store outputs first-writer-wins, then retry or dead-letter what failed. ``worker/tasks.py``
wraps :func:`run_batch` as the Celery task.

Every step is idempotent, so at-least-once delivery (acks_late, redelivery after a lost worker) can never
change or double a result: chunks whose output exists are skipped, so a redelivered or retried batch only
calls the provider for what is still missing. Retryable failures retry the batch (countdown: the largest
of its chunks' backoffs, Retry-After honoured); a chunk that failed for good is dead-lettered and the task
returns, so the job's merge still runs and can say precisely what failed.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from celery import Task

from humanizer import metrics
from humanizer.chunking import PlaceholderError, count_tokens, mask, unmask
from humanizer.chunking.sentences import split_in_two
from humanizer.config import get_settings
from humanizer.jobs import chunk_cache, lifecycle
from humanizer.jobs.deadletters import DeadLetters
from humanizer.jobs.models import JobStatus
from humanizer.jobs.store import ChunkOutput, JobNotFound, JobStore
from humanizer.logging import get_logger
from humanizer.pricing import cost_usd
from humanizer.providers import Provider, ProviderError, RewriteRequest, RewriteResult
from humanizer.providers.breaker import CircuitBreaker
from humanizer.providers.errors import ErrorKind
from humanizer.providers.sizing import retry_max_tokens, size_max_tokens
from humanizer.providers.targets import PRIMARY, counts_for_breaker, falls_over, parse_also_on
from humanizer.ratelimit import RateLimiter
from humanizer.worker import second_pass
from humanizer.worker.engine import CallEngine, get_engine
from humanizer.worker.factories import (
    breaker_for,
    get_store,
    limiter_for,
    provider_for,
    target_limiter,
    target_provider,
)
from humanizer.worker.retry_policy import retry_countdown
from humanizer.worker.writer import get_writer

log = get_logger("humanizer.worker")
_rng = random.Random()
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
    breaker = breaker_for(PRIMARY, f"{PRIMARY}:{provider_name}:{model}", timeout) if with_breakers else None
    hops = [_Hop(PRIMARY, provider_name, "", provider_for(provider_name, model), limiter_for(provider_name, model),
                 store.prices, breaker)]
    for entry in entries[1:]:
        t = s.fallback_target(str(entry.get("name")))
        if t is None:
            log.warning("chain.unknown_target", target=_safe_name(entry.get("name")))
            continue
        prices = {entry["model"]: tuple(entry["price"])} if entry.get("price") else store.prices
        t_timeout = min(t.timeout or s.openai_timeout, s.celery_task_soft_time_limit)
        hops.append(_Hop(
            t.name, t.provider, str(entry.get("model") or ""), target_provider(t.name), target_limiter(t.name),
            prices, breaker_for(t.name, t.name, t_timeout) if with_breakers else None,
        ))
    return hops


def _safe_name(value: object) -> str:
    text = str(value)
    return text if text.replace("_", "").isalnum() and len(text) <= 40 else "?"


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


def run_batch(self: Task, job_id: str, indices: list[int]) -> dict[str, Any]:
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
    if lifecycle.stops_work(meta["status"]):
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
        lifecycle.start(store, job_id)
    budget = _over_budget(store, meta, job_id)
    if budget:
        lifecycle.fail(store, job_id, f"stopped: {budget}", phase="stopped")
        bound.warning("batch.budget_exhausted")
        return _skip(store, job_id, todo, bound, summary, "budget")

    sp = meta.get("second_pass") or s.second_pass  # the job's own setting, else the workers'
    keys = {i: chunk_cache.cache_key(store.prefix, meta, chunks[i], sp) for i in todo} \
        if s.chunk_cache_ttl_seconds else {}
    hits = store.cached_outputs(keys)
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
        store.record_chunk_seconds(sum(seconds) / len(seconds))  # for estimates and the autoscaler
    outcomes = collections.Counter(c.outcome for c in calls)
    bound.info(
        "batch.done", chunks=len(indices), cached=len(hits), poisoned=len(poisoned),
        attempt=self.request.retries + 1, **dict(sorted(outcomes.items())),
    )
    store.count_finished(ok=outcomes["stored"] + len(hits))  # humanizer monitor
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
                if lifecycle.stops_work(self.store.status(self.job_id)):
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
        store.add_tokens(job_id, spent_in, spent_out)
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
            store.flag(job_id, call.index, str(err))
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
    store.count_finished(errors=1)
    log.error(
        "chunk.dead_lettered", job_id=job_id, chunk_id=index, task_id=task.request.id, error_kind=error_kind,
        status_code=err.status_code, attempts=attempts,
    )
    if err.stops_job:
        lifecycle.fail(store, job_id, f"stopped: the provider refused the job ({err.kind.value}): {err}",
                       phase="stopped")
    return {"index": index, "outcome": "dead_lettered", "error_kind": error_kind}
