"""The dead-letter list: chunks that failed for good, with the reason, kept until replayed or purged.

An entry's id is ``<job_id>:<chunk index>`` — one entry per chunk, however often it failed.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from humanizer.jobs.store import JobStore


class DeadLetter(BaseModel):
    id: str
    job_id: str
    chunk_index: int
    task_id: str | None
    error_kind: str
    message: str
    attempts: int
    failed_at: float
    stops_job: bool = False
    kept_original: bool = False  # the chunk's original text stands in the document (e.g. ``truncated``)


class DeadLetters:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.r: Any = store.r
        self.hash_key = f"{store.prefix}:dlq"
        self.index_key = f"{store.prefix}:dlq:index"

    def add(
        self,
        job_id: str,
        index: int,
        *,
        task_id: str | None,
        error_kind: str,
        message: str,
        attempts: int,
        stops_job: bool = False,
        kept_text: str | None = None,
        flag: str = "",
        tokens: tuple[int, int] = (0, 0),
    ) -> DeadLetter | None:
        """Add an entry and record the chunk's failure in its job. With ``kept_text`` the chunk's original text
        is stored as its output (flagged ``flag``) so the job still merges; returns None (and adds nothing)
        if a rewrite of that chunk was stored first."""
        entry = DeadLetter(
            id=f"{job_id}:{index}",
            job_id=job_id,
            chunk_index=index,
            task_id=task_id,
            error_kind=error_kind,
            message=message[:500],
            attempts=attempts,
            failed_at=time.time(),
            stops_job=stops_job,
            kept_original=kept_text is not None,
        )
        if kept_text is not None and not self.store.keep_original(
            job_id, index, kept_text, entry.model_dump(mode="json"), flag or message, *tokens
        ):
            return None
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.hash_key, entry.id, entry.model_dump_json())
        pipe.zadd(self.index_key, {entry.id: entry.failed_at})
        pipe.execute()
        if kept_text is None:
            self.store.record_failure(job_id, index, entry.model_dump(mode="json"))
        return entry

    def get(self, dl_id: str) -> DeadLetter | None:
        raw = self.r.hget(self.hash_key, dl_id)
        return DeadLetter.model_validate_json(raw) if raw else None

    def list(self, offset: int = 0, limit: int = 100, job_id: str | None = None) -> list[DeadLetter]:
        if job_id is not None:
            ids = [f"{job_id}:{i}" for i in sorted(self.store.failures(job_id))]
            ids = ids[offset : offset + limit]
        else:
            ids = list(self.r.zrevrange(self.index_key, offset, offset + limit - 1))
        if not ids:
            return []
        raws: list[Any] = self.r.hmget(self.hash_key, ids)
        return [DeadLetter.model_validate_json(raw) for raw in raws if raw]

    def count(self) -> int:
        return int(self.r.zcard(self.index_key))

    def remove(self, dl_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.hash_key, dl_id)
        pipe.zrem(self.index_key, dl_id)
        pipe.execute()

