"""Chunks to and from the JSON stored in Redis."""

from __future__ import annotations

import dataclasses
from typing import Any

from humanizer.chunking import Chunk


def chunk_to_dict(chunk: Chunk) -> dict[str, Any]:
    if hasattr(chunk, "model_dump"):
        return chunk.model_dump(mode="json")  # type: ignore[no-any-return]
    return dataclasses.asdict(chunk)  # type: ignore[call-overload, no-any-return]


def chunk_from_dict(data: dict[str, Any]) -> Chunk:
    if hasattr(Chunk, "model_validate"):
        return Chunk.model_validate(data)  # type: ignore[no-any-return, attr-defined]
    return Chunk(**data)
