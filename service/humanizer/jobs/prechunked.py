"""Chunks for the product brief's pre-split API: each given string is one prose chunk."""

from __future__ import annotations

from collections.abc import Sequence

from humanizer.chunking import Chunk, count_tokens

SEPARATOR = "\n\n"


def chunks_from_list(parts: Sequence[str]) -> list[Chunk]:
    """One prose chunk per part, joined by a blank line in the result. Empty parts are refused."""
    chunks: list[Chunk] = []
    offset = 0
    for i, part in enumerate(parts):
        if not part.strip():
            raise ValueError(f"chunk {i} is empty")
        prefix = SEPARATOR if i else ""
        offset += len(prefix)
        chunks.append(
            Chunk(index=i, kind="prose", text=part, prefix=prefix, tokens=count_tokens(part), start=offset)
        )
        offset += len(part)
    return chunks
