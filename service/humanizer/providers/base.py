"""The provider contract: a request, a result and a Protocol (the providers by name: ``registry.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from humanizer.providers.prompts import Style


@dataclass(frozen=True)
class RewriteRequest:
    """One chunk to rewrite. ``text`` may contain ⟦P<n>⟧ placeholders, which must come back intact."""

    text: str
    style: Style | str = Style.NEUTRAL
    custom_prompt: str | None = None
    context_before: str | None = None
    context_after: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    # a second pass (worker/second_pass.py): the earlier rewrite of ``text`` and what exactly to fix in it
    previous: str | None = None
    fixes: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never show document text in reprs (tracebacks, logs)
        return (
            f"RewriteRequest(chars={len(self.text)}, style={str(getattr(self.style, 'value', self.style))!r}, "
            f"custom_prompt={'yes' if self.custom_prompt else 'no'}, model={self.model!r}"
            + (f", second_pass={len(self.fixes)} fixes" if self.previous is not None else "") + ")"
        )


@dataclass(frozen=True)
class RewriteResult:
    text: str
    input_tokens: int
    output_tokens: int
    model: str
    provider: str
    finish_reason: str = "stop"

    @property
    def truncated(self) -> bool:
        """The model stopped at its token limit; the rewrite is probably incomplete."""
        return self.finish_reason == "length"

    def __repr__(self) -> str:
        return (
            f"RewriteResult(chars={len(self.text)}, input_tokens={self.input_tokens}, "
            f"output_tokens={self.output_tokens}, model={self.model!r}, provider={self.provider!r}, "
            f"finish_reason={self.finish_reason!r})"
        )


@runtime_checkable
class Provider(Protocol):
    name: str

    def rewrite(self, request: RewriteRequest) -> RewriteResult:
        """Rewrite one chunk; raises ``ProviderError`` on failure."""
        ...

    async def arewrite(self, request: RewriteRequest) -> RewriteResult:
        """The same on an event loop (the workers' path)."""
        ...
