"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from humanizer.jobs.deadletters import DeadLetter
from humanizer.jobs.models import JobRequest, JobStatus, SecondPassFigures, TargetFigures, TellScores

#: Text the API accepts: not only whitespace, no NUL byte (what ``jobs.submit.validate_text`` refuses).
TEXT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
Style = Literal["neutral", "casual", "professional", "academic"]
ProviderName = Literal["offline", "openai", "echo"]


class JobCreate(BaseModel):
    """A document (``text``) or pre-split ``chunks``, with the style (or a custom prompt) and model options."""

    # exactly one of text and chunks, as the schema says (``oneOf``) and the model checks (``JobRequest``)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["text"], "properties": {"text": {"type": "string"}}},
        {"required": ["chunks"], "properties": {"chunks": {"type": "array"}}},
    ]})

    text: str | None = Field(None, pattern=TEXT_PATTERN, description="the document; it is split into chunks for you")
    chunks: list[Annotated[str, Field(pattern=TEXT_PATTERN)]] | None = Field(
        None, min_length=1, description="pre-split chunks (at least one); the result joins them with blank lines"
    )
    style: Style | None = Field(None, description="the register of the rewrite")
    custom_prompt: str | None = Field(None, max_length=4000, description="instructions instead of a style")
    provider: ProviderName | None = Field(None, description="the provider (default: the server's)")
    model: str | None = Field(None, max_length=128)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1, le=128_000)
    chunk_max_tokens: int | None = Field(None, ge=16, le=32_000, description="token budget per chunk")
    passthrough_structures: bool = Field(True, description="keep code blocks, tables and the like unchanged")
    context_chars: int = Field(0, ge=0, le=2000, description="characters of neighbouring text given as context")
    verify: bool = Field(True, description="check that the rewrite kept meaning and facts")
    priority: Literal["high", "normal", "low"] = Field("normal", description="queue priority")
    token_budget: int | None = Field(None, ge=1, le=10**12, description="stop the job once it used this many tokens")
    max_cost_usd: float | None = Field(None, gt=0, le=1e6, description="stop the job once it cost this much (USD)")
    fallback: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]] | None = Field(
        None, max_length=16,
        description="fallback targets by name (configured in HUMANIZER_FALLBACK_TARGETS), tried in this order after "
        "the job's own provider and model; omitted: all configured ones; []: none",
    )
    fallback_also_on: list[Literal["auth", "permission", "quota_exhausted", "content_policy", "not_found"]] | None = (
        Field(None, max_length=5, description="error kinds that also fall over (by default they never do); "
              "omitted: HUMANIZER_FALLBACK_ALSO_ON")
    )
    second_pass: bool | None = Field(
        None, description="one more call, naming what to fix, for a chunk whose rewrite dropped a fact or still "
        "reads machine-written (default: HUMANIZER_SECOND_PASS, on for model providers)",
    )
    job_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
                               description="choose the job id (optional)")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        """Refuse unpaired surrogates (valid in JSON escapes, not encodable as UTF-8 for Redis), before the
        field checks, so the answer says what is wrong."""
        if not isinstance(data, dict):
            return data
        for name in ("text", "style", "custom_prompt", "provider", "model"):
            if isinstance(data.get(name), str):
                _check_utf8(data[name], name)
        chunks = data.get("chunks")
        for i, chunk in enumerate(chunks if isinstance(chunks, list) else []):
            if isinstance(chunk, str):
                _check_utf8(chunk, f"chunks[{i}]")
        return data

    def to_request(self) -> JobRequest:
        return JobRequest(**self.model_dump())


def _check_utf8(value: str | None, name: str) -> None:
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} contains invalid Unicode (an unpaired surrogate at position {exc.start})") from None


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    total_chunks: int
    model_chunks: int = Field(description="chunks sent to the model (the rest are kept verbatim)")
    estimated_completion_time: float = Field(description="unix time")
    links: dict[str, str]


class ProgressOut(BaseModel):
    done: int
    failed: int
    skipped: int
    total: int
    percentage: float


class Timings(BaseModel):
    created_at: float
    started_at: float | None
    finished_at: float | None
    elapsed_seconds: float | None


class Tokens(BaseModel):
    input: int
    output: int


class JobOut(BaseModel):
    job_id: str
    status: JobStatus
    phase: str
    progress: ProgressOut
    provider: str
    model: str
    style: str
    timings: Timings
    tokens: Tokens
    retries: int
    dead_letters: int
    error: str | None
    verification_passed: bool | None = None
    ai_tell_score: TellScores | None = Field(
        None, description="AI-tell score (0-100, docs/ai-tells.md) of the prose before and after, once verified"
    )
    cost_usd: float = Field(0.0, description="estimated cost (list prices, per target of the chain)")
    targets: list[TargetFigures] | None = Field(
        None, description="per target of the job's fallback chain (primary first): chunks served, calls, errors by "
        "kind, breaker skips, fall-overs, tokens, cost, mean latency; null for a job without fallback targets",
    )
    second_pass: SecondPassFigures | None = Field(
        None, description="second passes: extra calls, second rewrites kept, chunks refused by the budget, tokens, cost"
    )
    links: dict[str, str]


class JobResult(BaseModel):
    job_id: str
    status: JobStatus
    humanized_text: str
    verification: dict[str, Any] | None


class JobPage(BaseModel):
    items: list[JobOut]
    offset: int
    limit: int
    total: int


class CancelOut(BaseModel):
    job_id: str
    cancelled: bool = Field(description="false when the job had already ended")
    status: JobStatus


DeadLetterOut = DeadLetter  # the stored record is the API shape


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    offset: int
    limit: int
    total: int


class ReplayOut(BaseModel):
    dead_letter_id: str
    job_id: str
    status: JobStatus


class Liveness(BaseModel):
    status: Literal["ok"]


class ReadinessCheck(BaseModel):
    ok: bool
    message: str
    required: bool = Field(True, description="whether readiness depends on this check")


class Readiness(BaseModel):
    status: Literal["ready", "not-ready"]
    checks: dict[str, ReadinessCheck]
