"""What a job is: the request that creates it, its status, and what callers read back."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

from humanizer.jobs.options import JobOptions

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class JobStatus(StrEnum):
    PENDING = "PENDING"
    STARTED = "STARTED"
    PROGRESS = "PROGRESS"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELLED = "CANCELLED"
    SUSPENDED = "SUSPENDED"  # paused (a HumanizeJob's spec.suspend): no work runs; resume sends what is missing

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCESS, JobStatus.FAILURE, JobStatus.CANCELLED)

    @property
    def stops_work(self) -> bool:
        """No chunk of the job may be sent to a provider in this state."""
        return self.terminal or self is JobStatus.SUSPENDED


TERMINAL = frozenset({JobStatus.SUCCESS, JobStatus.FAILURE, JobStatus.CANCELLED})
STOPS_WORK = TERMINAL | {JobStatus.SUSPENDED}


class JobRequest(JobOptions):
    """One request to rewrite a document (``text``) or a list of pre-split ``chunks``, with its options
    (``JobOptions``, jobs/options.py: the one declaration of every option and its limits)."""

    text: str | None = Field(None, description="the document; it is split into chunks for you")
    chunks: list[str] | None = Field(
        None, description="pre-split chunks (at least one); the result joins them with blank lines"
    )
    job_id: str | None = Field(None, pattern=JOB_ID_PATTERN, description="choose the job id (optional)")

    @model_validator(mode="after")
    def _one_input(self) -> JobRequest:
        if (self.text is None) == (self.chunks is None):
            raise ValueError("give exactly one of 'text' or 'chunks'")
        return self


class Progress(BaseModel):
    completed: int
    failed: int
    skipped: int
    total: int
    percentage: float


class TellScores(BaseModel):
    """AI-tell score (0-100, docs/ai-tells.md) of the document's prose before and after the rewrite."""

    before: float
    after: float


class TargetFigures(BaseModel):
    """What one target of the job's chain did (``primary``: the job's own provider and model)."""

    name: str
    provider: str
    model: str
    chunks: int = Field(0, description="chunks whose stored rewrite this target made")
    calls: int = Field(0, description="provider calls made (a truncated reply's retry and a second pass are calls too)")
    errors: dict[str, int] = Field(default_factory=dict, description="failed calls by error kind")
    skipped: int = Field(0, description="calls not made because the target's circuit breaker was open")
    fallovers: int = Field(0, description="times a chunk left this target for the next one")
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_seconds: float | None = Field(None, description="mean seconds per call")
    second_passes: int = Field(0, description="second-pass calls this target answered (in calls, tokens and cost too)")
    second_pass_tokens_in: int = 0
    second_pass_tokens_out: int = 0
    second_pass_cost_usd: float = 0.0


class SecondPassFigures(BaseModel):
    """The job's second passes (worker/second_pass.py): extra calls, how often the second rewrite was kept,
    chunks refused one by the budget, and their tokens and estimated cost (also in the job's totals)."""

    calls: int
    kept: int
    over_budget: int
    tokens_in: int
    tokens_out: int
    cost_usd: float = 0.0


class JobView(BaseModel):
    """Everything a caller may read about a job at any moment."""

    job_id: str
    status: JobStatus
    phase: str
    progress: Progress
    provider: str
    model: str
    style: str
    retries: int
    tokens_in: int
    tokens_out: int
    cost_usd: float = 0.0
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    dead_letters: int
    verification: dict[str, Any] | None = None
    ai_tell_score: TellScores | None = None  # once verified
    targets: list[TargetFigures] | None = None  # per target of the chain (None: a job without fallbacks)
    second_pass: SecondPassFigures | None = None  # once a chunk had one (or the budget refused one)
    humanized_text: str | None = None
