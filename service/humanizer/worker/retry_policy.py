"""When to try a failed provider call again: jittered exponential backoff that honours Retry-After."""

from __future__ import annotations

import random


def retry_countdown(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts retries so far, from 0).

    "Equal jitter": half of the capped exponential step is fixed, half random, so retries spread out
    without ever collapsing to zero. A server's Retry-After is a floor — no request goes out before it
    elapses — plus a little jitter so that every worker told "2 s" does not come back at the same instant.
    """
    rng = rng or random.Random()
    step = min(cap, base * (2 ** max(0, attempt)))
    countdown = step / 2 + rng.uniform(0, step / 2)
    if retry_after is not None and retry_after > 0:
        countdown = max(countdown, retry_after + rng.uniform(0.05, 0.05 + min(1.0, 0.1 * retry_after)))
    return min(countdown, max(cap, retry_after or 0.0) + 1.0)
