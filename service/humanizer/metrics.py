"""Every Prometheus metric of Humanizer, in one place.

Conventions (checked by tests/unit/test_metrics_names.py): one prefix ``humanizer_``, base units as
suffixes (``_seconds``; ``_ratio`` for a unitless 0..1 value), ``_total`` on counters, and only
low-cardinality labels (outcome, state, reason, queue, provider, status code, stage, target — never job
ids, models chosen by users, base URLs or paths; ``target`` values are names from the configuration).

Who updates what:

- workers: chunk outcomes and durations, queue wait, provider requests/latency, tokens, cost, retries,
  dead letters, truncated replies, second passes, rate-limiter waits, documents' AI-tell scores, jobs by final state,
  tasks in flight (helpers below);
- the API: HTTP requests and submissions, and queue depth / unacked / dead-letter gauges refreshed from
  Redis on every scrape of its ``/metrics``.

Worker processes expose their metrics with :func:`start_worker_metrics_server`. Several worker
processes on one host: each ``humanizer worker`` process binds ``MONITORING_PROMETHEUS_PORT`` or, if that
port is taken, the next free one of the following ``MONITORING_PROMETHEUS_PORT_RANGE`` ports (the bound
port is logged; in Kubernetes there is one worker process per pod, so the port is fixed). With the
``prefork`` pool, tasks run in child processes: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable
directory (before the worker starts); children then write their samples there and the parent's server
aggregates them (prometheus-client's multiprocess mode). The ``threads`` pool needs nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from humanizer.logging import get_logger

prometheus_client.disable_created_metrics()

PREFIX = "humanizer_"
log = get_logger("humanizer.metrics")

_TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_JOB_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# ---- workers ------------------------------------------------------------------------------------
CHUNKS_PROCESSED = Counter(
    "humanizer_chunks_processed_total", "Chunk tasks finished, by outcome", ["outcome"]
)
CHUNK_DURATION = Histogram(
    "humanizer_chunk_duration_seconds", "Time one chunk task took (provider call included)", ["outcome"],
    buckets=_TASK_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "humanizer_queue_wait_seconds", "Time a task waited in its queue before a worker started it", ["queue"],
    buckets=_WAIT_BUCKETS,
)
TASKS_IN_FLIGHT = Gauge(
    "humanizer_tasks_in_flight", "Tasks running right now in this process", ["task"],
    multiprocess_mode="livesum",
)
RETRIES = Counter("humanizer_retries_total", "Chunk retries scheduled, by reason", ["reason"])
DEAD_LETTERS = Counter("humanizer_dead_letters_total", "Chunks dead-lettered, by error kind", ["error_kind"])
TRUNCATED = Counter(
    "humanizer_truncated_replies_total",
    "Chunks whose reply was cut off at max_tokens (finish_reason length), by how they ended",
    ["outcome"],
)
SECOND_PASS = Counter(
    "humanizer_second_pass_total",
    "Second passes asked for chunks (worker/second_pass.py), by reason (facts, tells, facts_and_tells) and "
    "outcome (kept_second, kept_first, failed, over_budget)",
    ["reason", "outcome"],
)
SECOND_PASS_TOKENS = Counter(
    "humanizer_second_pass_tokens_total", "Model tokens spent on second passes (also in humanizer_tokens_total)",
    ["direction"],
)
# ``target``: the target of the job's fallback chain that was called: ``primary`` (the job's own provider and
# model) or a fallback target's name from HUMANIZER_FALLBACK_TARGETS (a closed set from configuration).
PROVIDER_REQUESTS = Counter(
    "humanizer_provider_requests_total", "Requests to the model provider, by HTTP status code and target",
    ["provider", "status_code", "target"],
)
PROVIDER_LATENCY = Histogram(
    "humanizer_provider_request_duration_seconds", "Latency of one provider request", ["provider", "target"],
    buckets=_TASK_BUCKETS,
)
TOKENS = Counter(
    "humanizer_tokens_total", "Model tokens, input and output, by model (see model_label) and target",
    ["provider", "direction", "model", "target"],
)
COST = Counter(
    "humanizer_estimated_cost_usd_total",
    "Estimated provider cost in US dollars (list prices), by model and target",
    ["provider", "model", "target"],
)
FALLOVERS = Counter(
    "humanizer_fallovers_total",
    "Chunks moved from a target of the fallback chain to the next one, by the target left and why",
    ["target", "reason"],
)
BREAKER_STATE = Gauge(
    "humanizer_circuit_breaker_state",
    "A fallback chain target's circuit breaker as this process last changed it: 0 closed, 1 half-open, 2 open",
    ["target"], multiprocess_mode="mostrecent",
)
BREAKER_TRANSITIONS = Counter(
    "humanizer_circuit_breaker_transitions_total", "Circuit breaker state changes, by target and new state",
    ["target", "state"],
)
RATE_LIMIT_WAIT = Histogram(
    "humanizer_rate_limiter_wait_seconds", "Time a chunk waited for a rate-limiter slot",
    buckets=_WAIT_BUCKETS,
)
AI_TELL_SCORE = Histogram(
    "humanizer_document_ai_tell_ratio",
    "AI-tell score of a verified document's prose (docs/ai-tells.md), as a ratio (score / 100), before and after",
    ["stage"], buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
JOBS_FINISHED = Counter("humanizer_jobs_finished_total", "Jobs that ended, by final state", ["state"])
JOB_DURATION = Histogram(
    "humanizer_job_duration_seconds", "Time from submission to the end of a job", ["state"], buckets=_JOB_BUCKETS
)

# ---- API ----------------------------------------------------------------------------------------
JOB_TRANSITIONS = Counter(
    "humanizer_job_transitions_total", "Job state transitions made (jobs/lifecycle.py), by transition", ["transition"]
)
JOBS_SUBMITTED = Counter("humanizer_jobs_submitted_total", "Jobs accepted, by entry point", ["source"])
HTTP_REQUESTS = Counter(
    "humanizer_http_requests_total", "HTTP requests served, by route template and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "humanizer_http_request_duration_seconds", "HTTP request latency", ["method", "route"], buckets=_HTTP_BUCKETS
)
QUEUE_DEPTH = Gauge(
    "humanizer_queue_depth", "Messages waiting in a Celery queue, by priority step (0, 3, 6, 9; sum for the queue)",
    ["queue", "priority"], multiprocess_mode="mostrecent",
)
QUEUE_UNACKED = Gauge(
    "humanizer_queue_unacked", "Messages delivered to workers and not yet acknowledged",
    multiprocess_mode="mostrecent",
)
SCHEDULER_HELD = Gauge(
    "humanizer_scheduler_held_chunks", "Chunks the fair scheduler holds back, not yet in a queue",
    multiprocess_mode="mostrecent",
)
SCHEDULER_WINDOW = Gauge(
    "humanizer_scheduler_window_batches", "Batches the fair scheduler lets be queued or running at once",
    multiprocess_mode="mostrecent",
)
DEAD_LETTERS_PENDING = Gauge(
    "humanizer_dead_letters_pending", "Dead letters waiting to be replayed or purged",
    multiprocess_mode="mostrecent",
)

ALL_METRICS: list[Counter | Gauge | Histogram] = [
    CHUNKS_PROCESSED, CHUNK_DURATION, QUEUE_WAIT, TASKS_IN_FLIGHT, RETRIES, DEAD_LETTERS, TRUNCATED, SECOND_PASS,
    SECOND_PASS_TOKENS, PROVIDER_REQUESTS, PROVIDER_LATENCY, TOKENS, COST, FALLOVERS, BREAKER_STATE,
    BREAKER_TRANSITIONS, RATE_LIMIT_WAIT, AI_TELL_SCORE, JOBS_FINISHED, JOB_DURATION, JOB_TRANSITIONS, JOBS_SUBMITTED,
    HTTP_REQUESTS, HTTP_DURATION, QUEUE_DEPTH, QUEUE_UNACKED, DEAD_LETTERS_PENDING, SCHEDULER_HELD, SCHEDULER_WINDOW,
]

_LABEL_RE = re.compile(r"^[a-z0-9_]{1,40}$")
CHUNK_OUTCOMES = frozenset(
    {"stored", "duplicate", "cached", "skipped", "dead_lettered", "job_missing", "kept_original", "retry", "error"}
)


def _label(value: object, allowed: Iterable[str] | None = None) -> str:
    """Clamp a label value to a small, safe vocabulary (``other`` otherwise)."""
    text = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    if allowed is not None:
        return text if text in allowed else "other"
    return text if _LABEL_RE.match(text) else "other"


def status_label(status_code: int | str | None) -> str:
    """``"200"``, ``"429"`` …, or ``"timeout"`` / ``"connection_error"`` / ``"error"`` without a response."""
    if status_code is None:
        return "error"
    if isinstance(status_code, int) or str(status_code).isdigit():
        code = int(status_code)
        return str(code) if 100 <= code <= 599 else "error"
    return _label(status_code)


# ---- helpers the worker calls -------------------------------------------------------------------
# The helpers called for every chunk remember the labelled children they use, by their raw arguments:
# prometheus-client's ``labels()`` takes a lock and re-checks the values on every call, and cleaning the
# values (``_label``) is string work; several of each per chunk were ~3 % of a worker's CPU at W = 128
# (``make bench-profile``). Label values are clamped vocabularies, so these caches stay small.
_cached: dict[tuple[Any, ...], Any] = {}


def _children(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    found = _cached.get(key)
    if found is None:
        found = _cached[key] = make()
    return found


def observe_chunk(outcome: str, seconds: float, queue_wait: float | None = None, queue: str = "humanize") -> None:
    """One chunk task finished with ``outcome`` after ``seconds``; it had waited ``queue_wait`` in the queue."""

    def make() -> tuple[Any, Any]:
        out = _label(outcome, CHUNK_OUTCOMES)
        return CHUNKS_PROCESSED.labels(out), CHUNK_DURATION.labels(out)

    count, duration = _children(("chunk", outcome), make)
    count.inc()
    duration.observe(max(0.0, seconds))
    if queue_wait is not None:
        observe_queue_wait(queue_wait, queue)


def observe_queue_wait(seconds: float, queue: str = "humanize") -> None:
    QUEUE_WAIT.labels(_label(queue)).observe(max(0.0, seconds))


def observe_provider(
    status_code: int | str | None, seconds: float, provider: str = "openai", target: str = "primary"
) -> None:
    """One provider request: its HTTP status (or ``timeout``/``connection_error``) and its latency."""

    def make() -> tuple[Any, Any]:
        name, where = _label(provider), _label(target)
        return PROVIDER_REQUESTS.labels(name, status_label(status_code), where), PROVIDER_LATENCY.labels(name, where)

    requests, latency = _children(("provider", status_code, provider, target), make)
    requests.inc()
    latency.observe(max(0.0, seconds))


_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")


def model_label(model: str) -> str:
    """The ``model`` label: a bounded vocabulary set by the operator's configuration, never by a job.

    The configured default model (``OPENAI_MODEL``) as it is; otherwise the longest name of the price
    table (``HUMANIZER_MODEL_PRICES``) that prefixes ``model`` (a dated snapshot counts under its family,
    as its price does); anything else ``other``."""
    from humanizer.config import get_settings

    settings = get_settings()
    text = str(model or "").strip()
    if text and text == settings.openai_model and _MODEL_RE.match(text):
        return text
    key = max((k for k in settings.model_prices if text.startswith(k)), key=len, default=None)
    return key if key is not None and _MODEL_RE.match(key) else "other"


def observe_tokens(
    tokens_in: int, tokens_out: int, provider: str = "openai", model: str = "", cost_usd: float | None = None,
    target: str = "primary",
) -> float:
    """Count tokens and their estimated cost (``cost_usd`` if the caller priced it, else our list prices),
    by provider, model (:func:`model_label`) and fallback target; returns the cost in USD."""
    from humanizer.config import get_settings

    def make() -> tuple[str, Any, Any, tuple[str, str, str]]:
        name, where = _label(provider), _label(target)
        model_name = model_label(model)  # depends on the settings: they are part of the key
        return (name, TOKENS.labels(name, "input", model_name, where), TOKENS.labels(name, "output", model_name, where),
                (name, model_name, where))

    key = ("tokens", id(get_settings()), provider, model, target)
    name, t_in, t_out, cost_labels = _children(key, make)
    if tokens_in > 0:
        t_in.inc(tokens_in)
    if tokens_out > 0:
        t_out.inc(tokens_out)
    if cost_usd is not None:
        cost = max(0.0, cost_usd)
    else:
        cost = estimate_cost(model, tokens_in, tokens_out) if name == "openai" else 0.0
    if cost > 0:  # no cost series for a model without a price
        _children(("cost", *key), lambda: COST.labels(*cost_labels)).inc(cost)
    return cost


def count_fallover(target: str, reason: str) -> None:
    """A chunk left ``target`` for the next one of its chain; ``reason``: an error kind or ``breaker_open``."""
    FALLOVERS.labels(_label(target), _label(reason)).inc()


_BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


def observe_breaker(target: str, state: str) -> None:
    """A target's circuit breaker moved to ``state`` (closed, half_open, open)."""
    st = _label(state, _BREAKER_VALUES)
    BREAKER_TRANSITIONS.labels(_label(target), st).inc()
    BREAKER_STATE.labels(_label(target)).set(_BREAKER_VALUES.get(st, 0))


def estimate_cost(model: str, tokens_in: int, tokens_out: int) -> float:
    """List-price estimate from ``HUMANIZER_MODEL_PRICES``."""
    from humanizer.config import get_settings
    from humanizer.pricing import cost_usd

    return cost_usd(get_settings().model_prices, model, tokens_in, tokens_out)


def count_retry(reason: str) -> None:
    """A retry was scheduled; ``reason`` is an error kind (``rate_limit``, ``timeout``, ``server_error`` …)."""
    RETRIES.labels(_label(reason)).inc()


def count_dead_letter(error_kind: str) -> None:
    DEAD_LETTERS.labels(_label(error_kind)).inc()


TRUNCATION_OUTCOMES = frozenset({"recovered_by_retry", "recovered_by_split", "dead_lettered"})


def count_truncated(outcome: str) -> None:
    """A chunk's reply was truncated: ``recovered_by_retry`` (larger max_tokens), ``recovered_by_split`` or
    ``dead_lettered`` (original text kept)."""
    TRUNCATED.labels(_label(outcome, TRUNCATION_OUTCOMES)).inc()


SECOND_PASS_REASONS = frozenset({"facts", "tells", "facts_and_tells"})
SECOND_PASS_OUTCOMES = frozenset({"kept_second", "kept_first", "failed", "over_budget"})


def count_second_pass(reason: str, outcome: str) -> None:
    """A chunk deserved a second pass for ``reason``; ``outcome``: which rewrite was kept, the extra call
    failed, or the job's second-pass budget was spent."""
    SECOND_PASS.labels(_label(reason, SECOND_PASS_REASONS), _label(outcome, SECOND_PASS_OUTCOMES)).inc()


def count_second_pass_tokens(tokens_in: int, tokens_out: int) -> None:
    if tokens_in > 0:
        SECOND_PASS_TOKENS.labels("input").inc(tokens_in)
    if tokens_out > 0:
        SECOND_PASS_TOKENS.labels("output").inc(tokens_out)


def observe_rate_limit_wait(seconds: float) -> None:
    RATE_LIMIT_WAIT.observe(max(0.0, seconds))


def observe_tell_scores(before: float, after: float) -> None:
    """A document was verified: its AI-tell scores (0..100) before and after the rewrite."""
    AI_TELL_SCORE.labels("before").observe(min(1.0, max(0.0, before / 100)))
    AI_TELL_SCORE.labels("after").observe(min(1.0, max(0.0, after / 100)))


def observe_job_finished(state: str, seconds: float | None = None) -> None:
    """A job reached a final state (SUCCESS, FAILURE, CANCELLED); ``seconds`` since it was created."""
    st = _label(state.lower(), {"success", "failure", "cancelled"})
    JOBS_FINISHED.labels(st).inc()
    if seconds is not None:
        JOB_DURATION.labels(st).observe(max(0.0, seconds))


def count_job_transition(transition: str) -> None:
    JOB_TRANSITIONS.labels(_label(transition, {
        "submit", "start", "progress", "finish", "fail", "cancel", "suspend", "resume", "redrive",
    })).inc()


def count_job_submitted(source: str) -> None:
    JOBS_SUBMITTED.labels(_label(source, {"api", "cli", "python", "operator"})).inc()


@contextlib.contextmanager
def task_in_flight(task: str) -> Iterator[None]:
    """``with task_in_flight("humanize_chunk"): ...`` keeps the in-flight gauge right, even on errors."""
    gauge = _children(("in_flight", task), lambda: TASKS_IN_FLIGHT.labels(_label(task)))
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


# ---- queue wait: a publish timestamp in the message headers -------------------------------------
SENT_AT_HEADER = "hz_sent_at"


def stamp_publish_time(sender: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """A ``celery.signals.before_task_publish`` receiver: records when a task message was published."""
    if headers is not None:
        headers[SENT_AT_HEADER] = time.time()


def queue_wait_seconds(request: Any, now: float | None = None) -> float | None:
    """Seconds a task waited between its publish (or its ETA, for countdowns) and now; None if unknown."""
    sent = getattr(request, SENT_AT_HEADER, None)
    if sent is None:
        headers = getattr(request, "headers", None) or {}
        sent = headers.get(SENT_AT_HEADER) if isinstance(headers, Mapping) else None
    if sent is None:
        return None
    try:
        start = float(sent)
    except (TypeError, ValueError):
        return None
    eta = getattr(request, "eta", None)
    if eta:
        with contextlib.suppress(Exception):
            from datetime import datetime

            due = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
            start = max(start, due.timestamp())
    return max(0.0, (now or time.time()) - start)


# ---- the workers' own /metrics ------------------------------------------------------------------
def worker_metrics_port() -> int | None:
    """``MONITORING_PROMETHEUS_PORT`` (unset, empty or 0: no metrics server)."""
    raw = os.environ.get("MONITORING_PROMETHEUS_PORT", "").strip()
    return int(raw) if raw and int(raw) > 0 else None


def metrics_registry() -> CollectorRegistry:
    """The registry to serve: the default one, or a multiprocess aggregate under PROMETHEUS_MULTIPROC_DIR."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


def start_worker_metrics_server(port: int | None = None, addr: str = "0.0.0.0", tries: int | None = None) -> int | None:
    """Serve /metrics for this worker process; returns the bound port (None when disabled).

    If ``port`` is taken (another worker process on this host), the next ports are tried, up to
    ``tries`` (``MONITORING_PROMETHEUS_PORT_RANGE``, default 16) in all.
    """
    port = port if port is not None else worker_metrics_port()
    if not port:
        return None
    tries = tries or int(os.environ.get("MONITORING_PROMETHEUS_PORT_RANGE", "16") or 16)
    registry = metrics_registry()
    last: OSError | None = None
    for candidate in range(port, port + max(1, tries)):
        try:
            prometheus_client.start_http_server(candidate, addr=addr, registry=registry)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            last = exc
            continue
        log.info("metrics.server_started", port=candidate, addr=addr,
                 multiprocess=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")))
        return candidate
    raise OSError(errno.EADDRINUSE, f"no free metrics port in {port}..{port + tries - 1}") from last


def mark_worker_process_dead(pid: int) -> None:
    """For prefork + multiprocess mode: call from ``worker_process_shutdown`` so live gauges drop the child."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _initialise_label_sets() -> None:
    """Export every known label value at 0 from the start, so ``increase()``/``rate()`` see the first
    event (a series that appears at 1 shows no increase in Prometheus)."""
    from humanizer.providers.errors import ErrorKind

    for outcome in CHUNK_OUTCOMES:
        CHUNKS_PROCESSED.labels(outcome)
    for kind in [*(k.value for k in ErrorKind), "poison", "truncated"]:
        DEAD_LETTERS.labels(_label(kind))
    for outcome in TRUNCATION_OUTCOMES:
        TRUNCATED.labels(outcome)
    for reason in SECOND_PASS_REASONS:
        for outcome in SECOND_PASS_OUTCOMES:
            SECOND_PASS.labels(reason, outcome)
    for direction in ("input", "output"):
        SECOND_PASS_TOKENS.labels(direction)
    # Retries by reason: a pod's first retry of a kind must show as an increase too (found on the node tier,
    # where "retries by reason" had no increase at all over a run with 429s and 5xx).
    from humanizer.providers.errors import RETRYABLE_KINDS

    for retryable in RETRYABLE_KINDS:
        RETRIES.labels(_label(retryable.value))
    for state in ("success", "failure", "cancelled"):
        JOBS_FINISHED.labels(state)
        JOB_DURATION.labels(state)  # a first job's duration shows in rate() (found on the node tier)
    for source in ("api", "cli", "python", "operator"):
        JOBS_SUBMITTED.labels(source)
    # The codes the alerts and panels single out: a one-off burst of 401s (the job stops at once) must
    # show as an increase, or HumanizerProviderAuthFailure never fires (found on the node tier).
    for code in ("200", "401", "403", "429", "500"):
        PROVIDER_REQUESTS.labels("openai", code, "primary")


_initialise_label_sets()
