"""Per-token admission control and idempotency keys, both kept in Redis (shared by every API replica)."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from humanizer.jobs.models import TERMINAL

_TERMINAL = {s.value for s in TERMINAL}
_RESERVATION_TTL = 120.0  # seconds a reservation may wait for its submission to finish
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


class ActiveJobs:
    """How many unfinished jobs each token has: a sorted set of job ids (and pending reservations)."""

    def __init__(self, client: redis.Redis, prefix: str, job_key_prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self.job_key_prefix = job_key_prefix

    def key(self, token_id: str) -> str:
        return f"{self.prefix}:api:active:{token_id}"

    def _prune(self, token_id: str) -> None:
        """Drop ended (or expired) jobs and reservations whose submission never finished."""
        key = self.key(token_id)
        entries: list[tuple[str, float]] = list(self.r.zrange(key, 0, -1, withscores=True))  # type: ignore[arg-type]
        now = time.time()
        stale = [m for m, score in entries if m.startswith("reserve:") and score < now - _RESERVATION_TTL]
        jobs = [m for m, _ in entries if not m.startswith("reserve:")]
        if jobs:
            from humanizer.jobs.store import JobStore

            statuses = [row[0] for row in JobStore(self.r, prefix=self.job_key_prefix).fields_of(jobs, ["status"])]
            stale += [j for j, st in zip(jobs, statuses, strict=True) if st is None or st in _TERMINAL]
        if stale:
            self.r.zrem(key, *stale)

    def reserve(self, token_id: str, limit: int) -> str | None:
        """Take a slot; the reservation id, or None when ``limit`` unfinished jobs are running."""
        self._prune(token_id)
        reservation = f"reserve:{uuid.uuid4().hex}"
        key = self.key(token_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(key, {reservation: time.time()})
        pipe.zcard(key)
        pipe.expire(key, 7 * 24 * 3600)
        _, count, _ = pipe.execute()
        if int(count) > limit:
            self.r.zrem(key, reservation)
            return None
        return reservation

    def commit(self, token_id: str, reservation: str, job_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.key(token_id), reservation)
        pipe.zadd(self.key(token_id), {job_id: time.time()})
        pipe.execute()

    def release(self, token_id: str, reservation: str) -> None:
        self.r.zrem(self.key(token_id), reservation)

    def count(self, token_id: str) -> int:
        self._prune(token_id)
        return int(self.r.zcard(self.key(token_id)))


def fingerprint(body: Any) -> str:
    """A stable hash of a request body (key order and whitespace do not matter)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class IdempotentRecord:
    state: str  # "pending" or "done"
    fingerprint: str
    response: dict[str, Any] | None = None


class IdempotencyKeys:
    """``Idempotency-Key`` records: per token, the request's fingerprint and (once done) the response."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.r = client
        self.prefix = prefix
        self.ttl = ttl_seconds

    def key(self, token_id: str, idem_key: str) -> str:
        digest = hashlib.sha256(idem_key.encode("utf-8")).hexdigest()[:32]
        return f"{self.prefix}:api:idem:{token_id}:{digest}"

    def claim(self, token_id: str, idem_key: str, fp: str) -> IdempotentRecord | None:
        """Claim the key for a new request (None), or return the record already there."""
        key = self.key(token_id, idem_key)
        record = json.dumps({"state": "pending", "fingerprint": fp})
        if self.r.set(key, record, nx=True, ex=self.ttl):
            return None
        raw = self.r.get(key)
        if raw is None:  # expired between the two calls: try once more
            return None if self.r.set(key, record, nx=True, ex=self.ttl) else self.claim(token_id, idem_key, fp)
        data = json.loads(raw)
        return IdempotentRecord(data["state"], data["fingerprint"], data.get("response"))

    def complete(self, token_id: str, idem_key: str, fp: str, response: dict[str, Any]) -> None:
        record = json.dumps({"state": "done", "fingerprint": fp, "response": response})
        self.r.set(self.key(token_id, idem_key), record, ex=self.ttl)

    def forget(self, token_id: str, idem_key: str) -> None:
        self.r.delete(self.key(token_id, idem_key))
