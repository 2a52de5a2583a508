"""Chunks to and from the JSON stored in Redis."""

from __future__ import annotations

from typing import Any

from humanizer.chunking import Chunk


def chunk_to_dict(chunk: Chunk) -> dict[str, Any]:
    return chunk.model_dump(mode="json")


def chunk_from_dict(data: dict[str, Any]) -> Chunk:
    return Chunk.model_validate(data)
