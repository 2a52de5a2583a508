"""Chunking: split documents into model-sized chunks, reassemble them, protect spans from rewriting."""

from humanizer.chunking.models import Chunk, ChunkingOptions
from humanizer.chunking.protect import (
    Masked,
    PlaceholderError,
    ProtectedSpan,
    check_placeholders,
    mask,
    unmask,
)
from humanizer.chunking.splitter import reassemble, split_document
from humanizer.chunking.tokens import count_tokens

__all__ = [
    "Chunk",
    "ChunkingOptions",
    "Masked",
    "PlaceholderError",
    "ProtectedSpan",
    "check_placeholders",
    "count_tokens",
    "mask",
    "reassemble",
    "split_document",
    "unmask",
]
