"""A job's options: the one declaration of every option a job takes, its type, default and limits.

Everything that accepts options derives from :class:`JobOptions`:

- ``JobRequest`` (``jobs/models.py``, the Python API, the CLI, the operator) is ``JobOptions`` plus the
  input (``text`` or ``chunks``) and an optional ``job_id``;
- the HTTP API's ``JobCreate`` (``api/schemas.py``) is ``JobRequest`` plus what only HTTP needs (no unknown
  fields, the text pattern, ``oneOf``, choices checked at once);
- the operator maps a HumanizeJob's spec onto these fields by :data:`SPEC_PATHS`;
- the CLI's options (``cli.py``) take their help (limits, choices) and their validation from here.

``tests/unit/test_options_model.py`` checks that the CLI, the API's schema, ``JobRequest`` and the CRD's
openAPIV3Schema agree field by field (type, minimum, maximum, lengths, choices, defaults).

Choices (style, provider, the error kinds of ``fallback_also_on``) are :class:`Choice` metadata: the JSON
schema shows them as an ``enum``; the API refuses other values at once (422), while ``submit_job`` refuses
them for every other caller with a one-line ``SubmissionError`` that names the choices.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema

from humanizer.providers.prompts import STYLES
from humanizer.providers.registry import PROVIDERS
from humanizer.providers.targets import OPT_IN_NAMES

Priority = Literal["high", "normal", "low"]
FALLBACK_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
MAX_FALLBACK_TARGETS = 16


@dataclass(frozen=True)
class Choice:
    """Annotated metadata of a string option with a fixed set of values (an ``enum`` in the schema)."""

    name: str  # what the value is, in messages: "unknown style 'x'"
    values: tuple[str, ...]
    message: str = "unknown {name} {value!r}; choose one of: {choices}"

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = dict(handler(core_schema))
        schema["enum"] = list(self.values)
        return schema

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not accepted (None: it is)."""
        if value in self.values:
            return None
        return self.message.format(name=self.name, value=value, choices=", ".join(sorted(self.values)))


STYLE = Choice("style", tuple(STYLES))
PROVIDER = Choice("provider", tuple(PROVIDERS))
ALSO_ON = Choice("error kind", tuple(OPT_IN_NAMES), "cannot fall over on {value!r}; choose from: {choices}")


class JobOptions(BaseModel):
    """How to rewrite a job's document: style (or a custom prompt), model, chunking, checks, budgets, fallback."""

    model_config = ConfigDict(extra="forbid")

    style: Annotated[str, STYLE] | None = Field(None, description="the register of the rewrite")
    custom_prompt: str | None = Field(
        None, min_length=1, max_length=4000, description="instructions instead of a style"
    )
    provider: Annotated[str, PROVIDER] | None = Field(None, description="the provider (default: the server's)")
    model: str | None = Field(None, min_length=1, max_length=200, description="model name for the provider")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="sampling temperature")
    max_tokens: int | None = Field(None, ge=1, le=128_000, description="most tokens the model may write for one chunk")
    chunk_max_tokens: int | None = Field(None, ge=16, le=32_000, description="token budget per chunk")
    passthrough_structures: bool = Field(True, description="keep code blocks, tables and the like unchanged")
    context_chars: int = Field(0, ge=0, le=2000, description="characters of neighbouring text given as context")
    verify: bool = Field(True, description="check that the rewrite kept meaning and facts")
    priority: Priority = Field("normal", description="queue priority")
    token_budget: int | None = Field(None, ge=1, le=10**12, description="stop the job once it used this many tokens")
    max_cost_usd: float | None = Field(None, gt=0, le=1e6, description="stop the job once it cost this much (USD)")
    fallback: list[Annotated[str, Field(pattern=FALLBACK_NAME_PATTERN)]] | None = Field(
        None, max_length=MAX_FALLBACK_TARGETS,
        description="fallback targets by name (configured in HUMANIZER_FALLBACK_TARGETS), tried in this order after "
        "the job's own provider and model; omitted: all configured ones; []: none",
    )
    fallback_also_on: list[Annotated[str, ALSO_ON]] | None = Field(
        None, max_length=len(OPT_IN_NAMES),
        description="error kinds that also fall over (by default they never do); omitted: HUMANIZER_FALLBACK_ALSO_ON",
    )
    second_pass: bool | None = Field(
        None, description="one more call, naming what to fix, for a chunk whose rewrite dropped a fact or still "
        "reads machine-written (default: HUMANIZER_SECOND_PASS, on for model providers)",
    )

    def choice_problems(self) -> Iterator[str]:
        """Why a choice option's value is not accepted (nothing: all are)."""
        for name in CHOICE_FIELDS:
            choice = choice_of(type(self).model_fields[name])
            value = getattr(self, name)
            for item in value if isinstance(value, list) else [value]:
                problem = None if item is None or choice is None else choice.problem(item)
                if problem is not None:
                    yield problem


def choice_of(field: FieldInfo) -> Choice | None:
    """The :class:`Choice` of a field (of its items, for a list), if it has one."""
    stack: list[Any] = [field.annotation, *field.metadata]
    while stack:
        item = stack.pop()
        if isinstance(item, Choice):
            return item
        stack.extend(getattr(item, "__metadata__", ()))
        stack.extend(getattr(item, "__args__", ()))
    return None


#: the options whose values are a :class:`Choice`
CHOICE_FIELDS: tuple[str, ...] = tuple(n for n, f in JobOptions.model_fields.items() if choice_of(f) is not None)

#: Where each option sits in a HumanizeJob's ``spec`` (the CRD: charts/humanizer/crds/humanizejobs.yaml).
SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "style": ("style",),
    "custom_prompt": ("customPrompt",),
    "provider": ("model", "provider"),
    "model": ("model", "name"),
    "temperature": ("model", "temperature"),
    "max_tokens": ("model", "maxTokens"),
    "chunk_max_tokens": ("chunking", "maxTokens"),
    "passthrough_structures": ("chunking", "passthroughStructures"),
    "context_chars": ("chunking", "contextChars"),
    "verify": ("verification", "enabled"),
    "priority": ("priority",),
    "token_budget": ("limits", "tokenBudget"),
    "max_cost_usd": ("limits", "maxCostUSD"),
    "fallback": ("model", "fallback"),
    "fallback_also_on": ("model", "fallbackAlsoOn"),
    "second_pass": ("secondPass", "enabled"),
}


def options_from_spec(spec: Any) -> dict[str, Any]:
    """The options a HumanizeJob's ``spec`` sets (by :data:`SPEC_PATHS`; null or absent: the default)."""
    values: dict[str, Any] = {}
    for name, path in SPEC_PATHS.items():
        node: Any = spec
        for key in path:
            node = node.get(key) if hasattr(node, "get") else None
            if node is None:
                break
        if node is not None:
            values[name] = node
    return values


@functools.cache
def option_schema(name: str) -> dict[str, Any]:
    """The JSON schema of option ``name`` (a copy)."""
    return copy.deepcopy(JobOptions.model_json_schema()["properties"][name])


def limits_text(name: str) -> str:
    """The limits or choices of option ``name`` in words, from its schema ("16 to 32000", "high, normal or low")."""
    schema = option_schema(name)
    variant = next((v for v in schema.get("anyOf", [schema]) if v.get("type") != "null"), schema)
    if variant.get("type") == "array":
        variant = variant.get("items", {})
    if "enum" in variant:
        names = [str(v) for v in variant["enum"]]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    low = variant.get("minimum", variant.get("exclusiveMinimum"))
    high = variant.get("maximum")
    above = "more than " if "exclusiveMinimum" in variant else ""
    if low is not None and high is not None:
        return f"{above}{_number(low)} to {_number(high)}"
    if low is not None:
        return f"{above or 'at least '}{_number(low)}"
    return f"at most {_number(high)}" if high is not None else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
