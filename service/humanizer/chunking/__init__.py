"""Chunking: split documents into model-sized chunks, reassemble them, protect spans from rewriting."""

from humanizer.chunking.models import Chunk, ChunkingOptions
from humanizer.chunking.splitter import reassemble, split_document
from humanizer.chunking.tokens import count_tokens

__all__ = [
    "Chunk",
    "ChunkingOptions",
    "count_tokens",
    "reassemble",
    "split_document",
]
