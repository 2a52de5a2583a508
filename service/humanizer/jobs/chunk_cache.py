"""Reuse of rewritten chunks: identical chunk + identical request options → the stored rewrite.

The key hashes everything that changes the output (the prompts' version, provider, model, style or
custom prompt, temperature, whether a second pass may follow, the chunk's text and its context), so a
resubmitted document or a replay after a failure only calls the provider for chunks it has not rewritten
before. Stored by hash: a cache key reveals nothing about the text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import redis

from humanizer.providers.prompts import PROMPT_VERSION


def cache_key(prefix: str, meta: Mapping[str, str], chunk: Mapping[str, Any], second_pass: str = "") -> str:
    """``second_pass``: the job's effective second-pass setting (``auto``, ``on``, ``off``): a rewrite made
    with a second pass is not the one a job without it would get, nor the other way round."""
    material = json.dumps(
        [
            PROMPT_VERSION,
            meta.get("provider", ""),
            meta.get("model", ""),
            meta.get("style", ""),
            meta.get("custom_prompt", ""),
            meta.get("temperature", ""),
            chunk.get("text", ""),
            chunk.get("context_before") or "",
            chunk.get("context_after") or "",
            second_pass,
        ],
        ensure_ascii=False,
    )
    return f"{prefix}:cache:{hashlib.sha256(material.encode('utf-8')).hexdigest()}"


def get_many(client: redis.Redis, keys: Mapping[int, str]) -> dict[int, str]:
    """Cached rewrites for several chunks (index -> key) in one round trip; only the hits."""
    if not keys:
        return {}
    values = client.mget(list(keys.values()))
    return {i: v for i, v in zip(keys, values, strict=True) if v is not None}  # type: ignore[misc]
