"""The one job-submission path shared by the Python API, the CLI, the HTTP API and the operator.

It validates the request (size limits, options), splits the text into chunks, writes the job record
and the chunks to Redis, stores the chunks that need no model (passthrough structures) as done, and
sends the chord for the rest.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from humanizer.chunking import ChunkingOptions, split_document
from humanizer.config import Settings, get_settings
from humanizer.jobs import lifecycle
from humanizer.jobs.dispatch import dispatch
from humanizer.jobs.models import JobRequest
from humanizer.jobs.options import PROVIDER, STYLE
from humanizer.jobs.prechunked import chunks_from_list
from humanizer.jobs.store import JobStore
from humanizer.logging import get_logger
from humanizer.providers.targets import PRIMARY, parse_also_on
from humanizer.redis_client import check_redis

log = get_logger("humanizer.submit")

DEFAULT_CHUNK_SECONDS = 2.0
# job record fields ``origin_<key>``: who submitted the job (``submit_job(origin=...)``)
ORIGIN_PREFIX = "origin_"


class SubmissionError(ValueError):
    """A request that cannot be accepted; the message is one line, safe to show to the user."""


class TooManyChunks(SubmissionError):
    """The document splits into more chunks than a job may have (``HUMANIZER_MAX_CHUNKS``)."""


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    task_ids: list[str]
    total_chunks: int
    model_chunks: int
    estimated_completion_time: float  # unix time


def validate_text(text: str, settings: Settings) -> None:
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > settings.max_document_bytes:
        raise SubmissionError(
            f"document is {size:,} bytes; the limit is {settings.max_document_bytes:,} "
            "(HUMANIZER_MAX_DOCUMENT_BYTES)"
        )
    if "\x00" in text:
        raise SubmissionError("document contains NUL bytes; is it a binary file?")
    if not text.strip():
        raise SubmissionError("document is empty (only whitespace)")


def open_store(settings: Settings | None = None) -> JobStore:
    s = settings or get_settings()
    return JobStore(check_redis(s), prefix=s.key_prefix, ttl_seconds=s.result_ttl_seconds, prices=s.model_prices)


def submit_job(
    req: JobRequest, settings: Settings | None = None, origin: Mapping[str, str] | None = None,
    tenant: str | None = None,
) -> SubmittedJob:
    """Validate, split, store and dispatch ``req``.

    ``origin``: who submitted it, kept in the job record as ``origin_<key>`` fields (the operator
    records its HumanizeJob's kind, namespace, name and uid, to find jobs whose object is gone). Not part
    of ``JobRequest``: API callers cannot set it. ``tenant``: whose share of the workers the job uses
    (``HUMANIZER_TENANT_WEIGHTS``): the API passes ``token:<token id>``; by default a HumanizeJob's is
    ``ns:<namespace>`` and anything else's ``default``.
    """
    s = settings or get_settings()
    problem = next(req.choice_problems(), None)  # the API refused these already; other callers learn it here
    if problem is not None:
        raise SubmissionError(problem)
    style = req.style or s.style
    if req.custom_prompt is None and STYLE.problem(style):
        raise SubmissionError(str(STYLE.problem(style)))
    provider = req.provider or s.provider
    if PROVIDER.problem(provider):
        raise SubmissionError(str(PROVIDER.problem(provider)))
    if provider == "openai" and s.openai_api_key is None and not s.openai_base_url:
        raise SubmissionError("provider 'openai' needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)")

    if req.text is not None:
        validate_text(req.text, s)
        options = ChunkingOptions(
            max_tokens=req.chunk_max_tokens or s.chunk_max_tokens,
            passthrough_structures=req.passthrough_structures,
            context_chars=req.context_chars,
        )
        chunks = split_document(req.text, options)
    else:
        assert req.chunks is not None
        if not req.chunks:
            raise SubmissionError("chunks is an empty list")
        validate_text("\n\n".join(req.chunks), s)
        try:
            chunks = chunks_from_list(req.chunks)
        except ValueError as exc:
            raise SubmissionError(str(exc)) from None
    if len(chunks) > s.max_chunks:
        raise TooManyChunks(f"document splits into {len(chunks):,} chunks; the limit is {s.max_chunks:,}")

    store = open_store(s)
    job_id = req.job_id or uuid.uuid4().hex
    model = req.model or (s.openai_model if provider == "openai" else "")
    tenant = tenant or (f"ns:{origin['namespace']}" if origin and origin.get("namespace") else "default")
    chain, also_on = resolve_chain(req, s, provider, model)
    meta = {
        "provider": provider,
        "model": model,
        "style": style if req.custom_prompt is None else "custom",
        "custom_prompt": req.custom_prompt or "",
        "temperature": req.temperature if req.temperature is not None else "",
        "max_tokens": req.max_tokens or "",
        "verify": req.verify,
        "priority": req.priority,
        "token_budget": req.token_budget or "",
        "max_cost_usd": req.max_cost_usd or "",
        "tenant": tenant,
        "chain": json.dumps(chain) if len(chain) > 1 else "",
        "fallback_also_on": ",".join(also_on),
        "second_pass": "" if req.second_pass is None else req.second_pass,  # "": the workers' setting
        **{f"{ORIGIN_PREFIX}{k}": v for k, v in (origin or {}).items()},
    }
    ready = {c.index: c.text for c in chunks if c.kind != "prose"}
    model_indices = [c.index for c in chunks if c.kind == "prose"]
    meta["model_chunks"] = len(model_indices)  # the second pass's budget is a share of these
    store.create(job_id, meta, {c.index: c for c in chunks}, ready)
    lifecycle.submitted(store, job_id)
    task_ids = dispatch(job_id, model_indices, priority=req.priority, tenant=tenant)
    eta = time.time() + estimate_seconds(store, len(model_indices), s)
    log.info("job.submitted", job_id=job_id, chunks=len(chunks), model_chunks=len(model_indices),
             provider=provider, style=meta["style"])
    return SubmittedJob(job_id, task_ids, len(chunks), len(model_indices), eta)


def resolve_chain(
    req: JobRequest, s: Settings, provider: str, model: str
) -> tuple[list[dict[str, object]], tuple[str, ...]]:
    """The job's chain (``primary``, then its fallback targets: name, provider, model, price) and the
    error kinds that also fall over. Raises ``SubmissionError`` for an unknown target or kind."""
    names = [t.name for t in s.fallback_targets] if req.fallback is None else list(req.fallback)
    chain: list[dict[str, object]] = [{"name": PRIMARY, "provider": provider, "model": model}]
    for name in names:
        target = s.fallback_target(name)
        if target is None:
            known = ", ".join(t.name for t in s.fallback_targets) or "none are configured"
            raise SubmissionError(f"unknown fallback target {name!r} (HUMANIZER_FALLBACK_TARGETS: {known})")
        if any(entry["name"] == name for entry in chain):
            raise SubmissionError(f"fallback target {name!r} is listed twice")
        entry: dict[str, object] = {
            "name": name, "provider": target.provider,
            "model": target.model or (s.openai_model if target.provider == "openai" else ""),
        }
        if target.price_in is not None or target.price_out is not None:
            entry["price"] = [target.price_in or 0.0, target.price_out or 0.0]
        chain.append(entry)
    try:
        also_on = parse_also_on(req.fallback_also_on) if req.fallback_also_on is not None else s.fallback_also_on_kinds
    except ValueError as exc:
        raise SubmissionError(str(exc)) from None
    return chain, also_on


def estimate_seconds(store: JobStore, model_chunks: int, settings: Settings) -> float:
    """Rough time to finish: waves of chunks over the known worker capacity times recent chunk time."""
    per_chunk = store.chunk_seconds() or DEFAULT_CHUNK_SECONDS
    capacity = max(1, settings.calls_per_worker)
    return math.ceil(model_chunks / capacity) * per_chunk + 0.5
