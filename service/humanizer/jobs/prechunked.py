"""Chunks for the product brief's pre-split API: each given string is one prose chunk.

Their tokens are not counted here (``tokens`` is 0): the worker that rewrites a chunk counts it anyway
(it counts the masked text the model sees), and counting 1,000 chunks at submission held the first
batch back by ~17 ms of the submitter's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from humanizer.chunking import Chunk

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
            Chunk(index=i, kind="prose", text=part, prefix=prefix, tokens=0, start=offset)
        )
        offset += len(part)
    return chunks
