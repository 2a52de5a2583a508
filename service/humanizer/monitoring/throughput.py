"""Cluster-wide chunk throughput and error rate, kept as per-minute counters in Redis.

Workers count what they finish through ``JobStore.count_finished`` (once per batch, and once per dead
letter), which owns the keys (``<prefix>:stats:chunks:<ok|error>:<unix minute>``, kept 2 h); anyone
(``humanizer monitor``, the API) reads :func:`throughput`.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from humanizer.jobs.store import JobStore, throughput_key

ERROR_OUTCOMES = frozenset({"dead_lettered", "error", "failed"})
IGNORED_OUTCOMES = frozenset({"duplicate", "skipped", "job_missing", "retry"})


def record_chunks(client: redis.Redis, prefix: str, ok: int = 0, errors: int = 0, now: float | None = None) -> None:
    """Count finished chunks: ``ok`` (stored, cached, original kept) and ``errors`` (dead-lettered)."""
    JobStore(client, prefix=prefix).count_finished(ok=ok, errors=errors, now=now)


def record_chunk_outcome(client: redis.Redis, prefix: str, outcome: str, now: float | None = None) -> None:
    """Count one finished chunk by its outcome (``stored``/``kept_original`` → ok, ``dead_lettered`` → error)."""
    if outcome in IGNORED_OUTCOMES:
        return
    if outcome in ERROR_OUTCOMES:
        record_chunks(client, prefix, errors=1, now=now)
    else:
        record_chunks(client, prefix, ok=1, now=now)


def throughput(client: redis.Redis, prefix: str, minutes: int = 5, now: float | None = None) -> dict[str, Any]:
    """Chunks per minute and the error rate over the last ``minutes`` whole minutes plus this one."""
    current = int((now or time.time()) // 60)
    span = list(range(current - minutes, current + 1))
    pipe = client.pipeline(transaction=False)
    for minute in span:
        pipe.get(throughput_key(prefix, "ok", minute))
        pipe.get(throughput_key(prefix, "error", minute))
    raw = pipe.execute()
    ok = sum(int(v or 0) for v in raw[0::2])
    errors = sum(int(v or 0) for v in raw[1::2])
    elapsed_minutes = minutes + ((now or time.time()) % 60) / 60
    total = ok + errors
    return {
        "window_minutes": minutes,
        "chunks_ok": ok,
        "chunks_failed": errors,
        "throughput_per_minute": round(total / elapsed_minutes, 2) if elapsed_minutes else 0.0,
        "error_rate": round(errors / total, 4) if total else 0.0,
    }
