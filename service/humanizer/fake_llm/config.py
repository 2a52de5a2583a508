"""The fake server's configuration: behaviour, limits and fault rules (pydantic; JSON in and out)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FaultKind = Literal[
    "429", "500", "502", "503", "timeout", "400", "401", "403", "404", "422",
    "insufficient_quota", "content_filter", "context_length", "empty", "length", "drop_number",
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]
Mode = Literal["rewrite", "echo", "drop-number", "nonce"]


class FaultRule(BaseModel):
    """One injected fault. A request gets the fault when *all* the selectors that are set agree.

    - ``match``: the user text contains this substring (e.g. a marker such as ``FAULT-400``);
    - ``first_n``: only the first N requests that reach this rule;
    - ``times_per_text``: each distinct text fails its first K times, then passes (retry tests);
    - ``probability``: drawn from the server's seeded RNG;
    - ``min_tokens``: the user text is at least this many tokens long (e.g. only long chunks are truncated).

    Reply-altering kinds answer 200 with a faulty reply: ``empty`` (no content), ``length`` (half the reply,
    finish_reason ``length``) and ``drop_number`` (the rewrite misses the text's first number, as the
    ``drop-number`` mode does for every reply; with ``times_per_text=1`` only a text's first reply does).

    ``retry_after`` (seconds) goes into ``Retry-After``/``retry-after-ms`` for 429s; ``hang`` is how long a
    ``timeout`` fault stalls before it answers normally.
    """

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    first_n: int | None = Field(default=None, ge=0)
    match: str | None = None
    times_per_text: int | None = Field(default=None, ge=0)
    min_tokens: int | None = Field(default=None, ge=0)
    retry_after: float | None = Field(default=None, ge=0.0)
    hang: float = Field(default=30.0, ge=0.0)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_as_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v


class FakeLLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency: float = Field(default=0.0, ge=0.0, description="mean seconds to the response, reply work included")
    jitter: float = Field(default=0.0, ge=0.0, description="uniform ± seconds around the mean")
    api_key: str | None = Field(default=None, description="require a bearer key (401 otherwise)")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute; 429 beyond")
    mode: Mode = "rewrite"
    pad_tokens: int = Field(default=0, ge=0, description="pad replies to about this many tokens (0: off)")
    cut_at_max_tokens: bool = Field(
        default=False, description="cut a reply longer than the request's max_tokens there, with finish_reason "
        "length, as a real server does (off by default: benchmarks send small limits with padded replies)",
    )
    model: str = "fake-model"
    seed: int = 0
    faults: list[FaultRule] = Field(default_factory=list)
    log_limit: int = Field(default=50_000, ge=0, description="request-log entries kept for /_admin/stats")

    def public(self) -> dict[str, Any]:
        """The config as JSON, with the API key replaced by whether one is set."""
        data = self.model_dump(mode="json")
        data["api_key"] = "***" if self.api_key else None
        return data


def parse_fault(spec: str) -> FaultRule:
    """``429:probability=0.5:retry_after=2`` → FaultRule. Fields: see ``FaultRule``."""
    kind, *pairs = spec.split(":")
    fields: dict[str, Any] = {"kind": kind.strip()}
    for pair in pairs:
        if not pair:
            continue
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"fault option {pair!r} is not name=value")
        fields[name.strip().replace("-", "_")] = value
    return FaultRule.model_validate(fields)
