"""Data models of the chunking package (pydantic v2, frozen, JSON round-trippable)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ChunkKind = Literal["prose", "passthrough"]
"""``prose`` chunks are rewritten by the model; ``passthrough`` chunks come back unchanged."""

StructureKind = Literal["code", "table", "list", "heading", "html", "hr", "frontmatter", "whitespace"]
"""The markdown structure a chunk consists of (``None`` on ordinary prose chunks)."""


class ChunkingOptions(BaseModel):
    """How a document is cut into chunks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int = Field(default=400, ge=16, description="Token budget (cl100k) of every prose chunk.")
    passthrough_structures: bool = Field(
        default=True,
        description="Code blocks, tables, lists, headings, HTML blocks, horizontal rules and front matter "
        "become passthrough chunks (never sent to the model). "
        "When False they stay whole inside prose chunks.",
    )
    context_chars: int = Field(
        default=0,
        ge=0,
        description="If > 0, prose chunks carry up to this many characters of the neighbouring prose "
        "(context_before / context_after) for the model; context is never part of the output.",
    )


class Chunk(BaseModel):
    """One piece of a document.

    The document is exactly ``"".join(c.prefix + c.text + c.suffix for c in chunks)``. ``prefix`` is the
    whitespace between the previous chunk and this one (or the document's leading whitespace), ``suffix``
    is only non-empty on the last chunk (the document's trailing whitespace). Prose ``text`` never starts or
    ends with whitespace.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    kind: ChunkKind
    text: str
    prefix: str = ""
    suffix: str = ""
    tokens: int = Field(ge=0, description="count_tokens(text); 0: not counted (pre-split chunks: the worker counts)")
    start: int = Field(ge=0, description="Offset of text in the original document (characters).")
    structure: StructureKind | None = Field(
        default=None,
        description="Set when the chunk is a single markdown structure (always on passthrough chunks).",
    )
    oversized: bool = Field(
        default=False,
        description="True for a prose chunk holding a structure that alone exceeds max_tokens "
        "(only with passthrough_structures=False; structures are never split).",
    )
    context_before: str | None = None
    context_after: str | None = None

    @property
    def end(self) -> int:
        """Offset just past ``text`` in the original document."""
        return self.start + len(self.text)
