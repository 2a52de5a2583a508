"""Fallback targets: where a chunk goes when the job's primary model cannot serve it, and when it may go.

A job's *chain* is its primary target (the job's provider and model, with the ``OPENAI_*`` connection
settings, the global rate limits and the price table), named ``primary``, followed by the fallback
targets configured in ``HUMANIZER_FALLBACK_TARGETS`` (all of them in their order, or the ones a job names).
Each fallback target has its own provider, model, base URL, API key (by the *name* of the environment
variable that holds it, never the key itself), RPM/TPM limits, prices and timeout.

Which errors move a chunk to the next target (``falls_over``):

- after the target's retries: overload and outages — ``rate_limited`` (429), ``server_error`` (5xx),
  ``timeout``, ``connection``, ``invalid_response``;
- at once (retrying the same text on the same model cannot help): ``context_length``;
- never, unless listed in ``also_on`` (``HUMANIZER_FALLBACK_ALSO_ON`` or the job's ``fallback_also_on``):
  ``auth``, ``permission``, ``quota_exhausted``, ``content_policy``, ``not_found`` — the account's or the
  text's own problems, which a silent switch of model would hide. Listed ones fall over at once.

Errors that count toward a target's circuit breaker (``counts_for_breaker``) are those that say the
target is unhealthy: ``server_error``, ``timeout``, ``connection``, ``invalid_response``, and the
``also_on`` account errors. A 429 does not (it says "slow down", which the limiter and Retry-After
handle), nor does ``context_length`` (a property of one text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from humanizer.providers.errors import ErrorKind, ProviderError

PRIMARY = "primary"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"  # a Prometheus label value as it is: no mapping, no collisions
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"

#: Fall over once the target's retries are spent.
AFTER_RETRIES = frozenset(
    {ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT, ErrorKind.CONNECTION,
     ErrorKind.INVALID_RESPONSE}
)
#: Fall over at the first occurrence.
AT_ONCE = frozenset({ErrorKind.CONTEXT_LENGTH})
#: Fall over (at once) only when configured.
OPT_IN = frozenset(
    {ErrorKind.AUTH, ErrorKind.PERMISSION, ErrorKind.QUOTA_EXHAUSTED, ErrorKind.CONTENT_POLICY, ErrorKind.NOT_FOUND}
)
OPT_IN_NAMES: tuple[str, ...] = tuple(sorted(k.value for k in OPT_IN))
_UNHEALTHY = frozenset({ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.INVALID_RESPONSE})


class Target(BaseModel):
    """One fallback target (an entry of ``HUMANIZER_FALLBACK_TARGETS``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="label in metrics, figures and requests")
    provider: str = Field("openai", pattern=r"^(openai|offline|echo)$")
    model: str | None = Field(None, min_length=1, max_length=200, description="default: OPENAI_MODEL")
    base_url: str | None = Field(None, pattern=r"^https?://.+", description="default: api.openai.com")
    api_key_env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN,
        description="environment variable holding the key; unset: OPENAI_API_KEY without base_url, none with one",
    )
    rpm: float = Field(0.0, ge=0.0, description="requests per minute, cluster-wide (0: no limit)")
    tpm: float = Field(0.0, ge=0.0, description="tokens per minute, cluster-wide (0: no limit)")
    price_in: float | None = Field(None, ge=0.0, description="USD per million input tokens")
    price_out: float | None = Field(None, ge=0.0, description="USD per million output tokens")
    timeout: float | None = Field(None, gt=0.0, description="seconds; default OPENAI_TIMEOUT")

    @field_validator("name")
    @classmethod
    def _not_primary(cls, v: str) -> str:
        if v == PRIMARY:
            raise ValueError(f"{PRIMARY!r} names the job's own provider and model; choose another name")
        return v

    def __repr__(self) -> str:  # the key's variable name is fine to show, the URL is kept short
        return f"Target(name={self.name!r}, provider={self.provider!r}, model={self.model!r})"


def parse_also_on(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """``auth,quota_exhausted`` or a list → sorted kinds; ValueError for a kind that cannot be opted in."""
    if values is None:
        return ()
    items = values.split(",") if isinstance(values, str) else list(values)
    out: set[str] = set()
    for raw in items:
        name = str(raw).strip().lower()
        if not name:
            continue
        if name not in OPT_IN_NAMES:
            raise ValueError(f"cannot fall over on {name!r}; choose from: {', '.join(OPT_IN_NAMES)}")
        out.add(name)
    return tuple(sorted(out))


def check_unique(targets: Iterable[Target]) -> None:
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise ValueError(f"fallback target {t.name!r} is listed twice")
        seen.add(t.name)


def falls_over(err: ProviderError, also_on: Iterable[str] = ()) -> str | None:
    """``"after_retries"``, ``"at_once"`` or None (the chunk stays on its target: retried or dead-lettered)."""
    if err.kind in AT_ONCE or err.kind.value in set(also_on):
        return "at_once"
    if err.kind in AFTER_RETRIES:
        return "after_retries"
    return None


def counts_for_breaker(err: ProviderError, also_on: Iterable[str] = ()) -> bool:
    """Whether ``err`` is a sign that the target itself is unhealthy (a step toward opening its breaker)."""
    return err.kind in _UNHEALTHY or err.kind.value in set(also_on)


_SAFE = re.compile(NAME_PATTERN)


def is_target_name(value: str) -> bool:
    return bool(_SAFE.match(value))
