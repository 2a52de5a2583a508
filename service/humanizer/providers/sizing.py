"""How many output tokens (``max_tokens``) to allow for one chunk's rewrite.

A rewrite is about as long as its input, so each call asks for what its own chunk needs instead of
one fixed limit for every chunk: ``ceil(ratio × input tokens) + margin``, at least ``MIN_MAX_TOKENS``,
at most the cap (``OPENAI_MAX_TOKENS``, or the job's ``max_tokens``). A reply cut off at that limit
(finish_reason ``length``) is retried once with ``retry_max_tokens``: twice the first limit and at
least ``3 × input + 256``, still under the cap. With ``ratio`` 0 every call asks for the cap (the old
fixed behaviour).
"""

from __future__ import annotations

import math

#: No call asks for fewer output tokens than this (a very short chunk still gets room for a sentence).
MIN_MAX_TOKENS = 64
RETRY_RATIO = 3.0
RETRY_MARGIN = 256


def size_max_tokens(input_tokens: int, cap: int, ratio: float = 1.5, margin: int = 64) -> int:
    """``max_tokens`` for a chunk of ``input_tokens`` (the text the model must give back)."""
    cap = max(1, int(cap))
    if ratio <= 0:
        return cap
    wanted = math.ceil(max(0, input_tokens) * ratio) + max(0, margin)
    return min(cap, max(MIN_MAX_TOKENS, wanted))


def retry_max_tokens(input_tokens: int, cap: int, first: int) -> int | None:
    """The larger ``max_tokens`` for the one retry of a truncated reply; None when the cap leaves no room
    above ``first`` (the retry could only be cut off at the same place)."""
    cap = max(1, int(cap))
    bigger = min(cap, max(2 * first, math.ceil(max(0, input_tokens) * RETRY_RATIO) + RETRY_MARGIN))
    return bigger if bigger > first else None
