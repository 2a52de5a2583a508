"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from humanizer.jobs.deadletters import DeadLetter
from humanizer.jobs.models import JobRequest, JobStatus, SecondPassFigures, TargetFigures, TellScores
from humanizer.jobs.options import CHOICE_FIELDS, choice_of

#: Text the API accepts: not only whitespace, no NUL byte (what ``jobs.submit.validate_text`` refuses).
TEXT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"


class JobCreate(JobRequest):
    """A document (``text``) or pre-split ``chunks``, with the style (or a custom prompt) and model options."""

    # JobRequest (its options: JobOptions, jobs/options.py) as HTTP takes it: no unknown fields, text with a
    # non-space character, at least one chunk, exactly one of text and chunks in the schema too (oneOf), and
    # choices (style, provider, error kinds) refused at once, as the schema's enums say
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["text"], "properties": {"text": {"type": "string"}}},
        {"required": ["chunks"], "properties": {"chunks": {"type": "array"}}},
    ]})

    text: str | None = Field(None, pattern=TEXT_PATTERN, description="the document; it is split into chunks for you")
    chunks: list[Annotated[str, Field(pattern=TEXT_PATTERN)]] | None = Field(
        None, min_length=1, description="pre-split chunks (at least one); the result joins them with blank lines"
    )

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

    @field_validator(*CHOICE_FIELDS)
    @classmethod
    def _a_choice(cls, value: Any, info: ValidationInfo) -> Any:
        """A value of the field's enum (``submit_job`` checks the same for the other callers, later)."""
        choice = choice_of(cls.model_fields[str(info.field_name)])
        for item in value if isinstance(value, list) else [value]:
            if choice is not None and item is not None and item not in choice.values:
                raise ValueError(f"unknown {choice.name}; choose one of: {', '.join(choice.values)}")
        return value

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
