"""The job record in Redis: the one place where documents, chunk outputs and progress live.

Documents travel by reference (job id + chunk index); tasks read their chunk from here. Chunk outputs
are first-writer-wins (``HSETNX`` inside a Lua script that also moves the counters), so a redelivered or
duplicated task can never change or double-count a chunk.

Keys (prefix ``hz`` by default)::

    hz:job:<id>          hash   status, phase, counters, options, timestamps
    hz:job:<id>:chunks   hash   index -> chunk JSON (text, kind, context)
    hz:job:<id>:out      hash   index -> rewritten text (first writer wins)
    hz:job:<id>:fail     hash   index -> failure JSON (permanent failures / dead letters)
    hz:job:<id>:flags    hash   index -> why a chunk kept its original text (altered placeholders, truncated)
    hz:job:<id>:result   string the merged document (first writer wins)
    hz:job:<id>:report   string verification report JSON
    hz:job:<id>:deliveries hash chunk index -> starts of its call that never reported back (poison detection)
    hz:job:<id>:targets  hash   "<target>|<figure>" -> calls, errors, tokens, seconds, second passes (sp_*)...
                                per target of the job's fallback chain (jobs with fallback targets only)
    hz:job:<id>:served   hash   index -> the target whose rewrite was stored (first writer wins)
    hz:job:<id>:route    hash   index -> "<position in the chain>:<batch attempt it got there>" for chunks
                                that fell over (absent: still on the primary)
    hz:job:<id>:second_pass hash chunk index -> how its one second pass ended (worker/second_pass.py)
    hz:jobs              zset   job id -> created_at (listing)
    hz:active            zset   unfinished job id -> time of its last progress (reconciler)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from humanizer.chunking import Chunk
from humanizer.jobs.models import TERMINAL, JobStatus, JobView, Progress, SecondPassFigures, TargetFigures, TellScores
from humanizer.jobs.scheduler import job_keys as scheduler_keys
from humanizer.logging import get_logger
from humanizer.pricing import cost_usd

log = get_logger("humanizer.store")

_TERMINAL_ARGS = [s.value for s in TERMINAL]

# KEYS: job, out, active ; ARGV: index, text, tokens_in, tokens_out, now, job id
_SAVE_OUTPUT = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[3], 'XX', ARGV[5], ARGV[6])
redis.call('HINCRBY', KEYS[1], 'done', 1)
redis.call('HINCRBY', KEYS[1], 'tokens_in', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'tokens_out', ARGV[4])
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'PENDING' or st == 'STARTED' then
  redis.call('HSET', KEYS[1], 'status', 'PROGRESS')
  if not redis.call('HGET', KEYS[1], 'started_at') then redis.call('HSET', KEYS[1], 'started_at', ARGV[5]) end
end
return 1
"""

# KEYS: job, fail, active ; ARGV: index, failure json, now, job id
_RECORD_FAILURE = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[3], 'XX', ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[1], 'failed', 1)
return 1
"""

# KEYS: job, out, fail, flags, active ; ARGV: index, original text, tokens_in, tokens_out, failure json, flag,
# now, job id. A chunk that failed for good but keeps its original text in the document: the output is the
# original (``done`` is not counted: the chunk counts as failed), the failure is recorded and flagged.
_KEEP_ORIGINAL = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[5]) == 1 then redis.call('HINCRBY', KEYS[1], 'failed', 1) end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
redis.call('HINCRBY', KEYS[1], 'tokens_in', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'tokens_out', ARGV[4])
redis.call('ZADD', KEYS[5], 'XX', ARGV[7], ARGV[8])
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'PENDING' or st == 'STARTED' then
  redis.call('HSET', KEYS[1], 'status', 'PROGRESS')
  if not redis.call('HGET', KEYS[1], 'started_at') then redis.call('HSET', KEYS[1], 'started_at', ARGV[7]) end
end
return 1
"""

# KEYS: job, fail ; ARGV: index
_CLEAR_FAILURE = """
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'failed', -1)
return 1
"""

# KEYS: job, active ; ARGV: new status, now, job id, allowed current states (",A,B,": any if empty), then
# field/value pairs. Refuses to leave a terminal state, and any state not allowed (jobs/lifecycle.py's table).
# A move to an ended state is published on ``<job key>:ended`` (``JobStore.wait_ended``), after the record
# says so: a waiter that hears it reads the final record.
_SET_STATUS = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st == 'SUCCESS' or st == 'FAILURE' or st == 'CANCELLED' then return 0 end
if st == 'SUSPENDED' and ARGV[1] ~= 'CANCELLED' and ARGV[1] ~= 'FAILURE' then return 0 end
if ARGV[4] ~= '' and not string.find(ARGV[4], ',' .. st .. ',', 1, true) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
local ended = ARGV[1] == 'SUCCESS' or ARGV[1] == 'FAILURE' or ARGV[1] == 'CANCELLED'
if ended then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[3])
end
if ARGV[1] == 'SUSPENDED' then redis.call('ZREM', KEYS[2], ARGV[3]) end
if (ARGV[1] == 'STARTED' or ARGV[1] == 'PROGRESS') and not redis.call('HGET', KEYS[1], 'started_at') then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[2])
end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ended then redis.call('PUBLISH', KEYS[1] .. ':ended', ARGV[1]) end
return 1
"""

# KEYS: job, active ; ARGV: new status, now, job id, fields... Reopens a finished job (replay / re-drive).
_REOPEN = """
if not redis.call('HGET', KEYS[1], 'status') then return -1 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'skipped', 0)
redis.call('HDEL', KEYS[1], 'finished_at', 'error')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


# KEYS: job, chunks, result, active ; ARGV: now, job id. A record that lost fields every reader needs (a
# crash between AOF fsyncs): ``total`` is the number of chunks, ``status`` is SUCCESS if the merged document
# exists, else PROGRESS (the job is active again; the reconciler finishes it). Returns the repaired fields.
_REPAIR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local fixed = {}
if not redis.call('HGET', KEYS[1], 'total') then
  redis.call('HSET', KEYS[1], 'total', redis.call('HLEN', KEYS[2]))
  fixed[#fixed + 1] = 'total'
end
if not redis.call('HGET', KEYS[1], 'status') then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('HSET', KEYS[1], 'status', 'SUCCESS', 'finished_at', ARGV[1])
    redis.call('ZREM', KEYS[4], ARGV[2])
  else
    redis.call('HSET', KEYS[1], 'status', 'PROGRESS')
    redis.call('ZADD', KEYS[4], ARGV[1], ARGV[2])
  end
  fixed[#fixed + 1] = 'status'
end
return fixed
"""

# KEYS: the average ; ARGV: a new sample. One round trip instead of a read and a write.
_MOVING_AVERAGE = """
local old = tonumber(redis.call('GET', KEYS[1]))
local value = tonumber(ARGV[1])
if old then value = 0.8 * old + 0.2 * value end
redis.call('SET', KEYS[1], string.format('%.4f', value), 'EX', 86400)
return 1
"""

THROUGHPUT_KEEP_SECONDS = 2 * 3600


def throughput_key(prefix: str, kind: str, minute: int) -> str:
    """The per-minute counter of finished chunks (``kind``: ok or error) at unix minute ``minute``."""
    return f"{prefix}:stats:chunks:{kind}:{minute}"


#: Fields without which a job record cannot be read; ``JobStore.meta`` repairs them (``_REPAIR``).
REQUIRED_FIELDS = ("status", "total")


class JobNotFound(KeyError):
    pass


class JobExists(ValueError):
    pass


@dataclass(frozen=True)
class ChunkOutput:
    """One chunk's rewritten text to store; ``cache_key``/``cache_ttl``: also keep it for reuse."""

    job_id: str
    index: int
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    cache_key: str = ""
    cache_ttl: int = 0


def _layout(chunks: Mapping[int, Chunk | Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Each chunk's ``(prefix, suffix)`` in index order: with every chunk's final text (the outputs hash
    holds the rewrites and, from the start, the passthrough chunks' own text) the whole document. The
    merge reads this instead of decoding every chunk."""
    def edges(c: Chunk | Mapping[str, Any]) -> tuple[str, str]:
        if isinstance(c, Chunk):
            return c.prefix, c.suffix
        return str(c.get("prefix") or ""), str(c.get("suffix") or "")

    return [edges(chunks[i]) for i in sorted(chunks)]


class JobStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "hz",
        ttl_seconds: int = 7 * 24 * 3600,
        prices: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.r: Any = client  # decode_responses=True: str values; redis-py types them as bytes | str
        self.prices = dict(prices or {})
        self.prefix = prefix
        self.ttl = ttl_seconds
        self._record_failure = client.register_script(_RECORD_FAILURE)
        self._clear_failure = client.register_script(_CLEAR_FAILURE)
        self._keep_original = client.register_script(_KEEP_ORIGINAL)
        self._set_status = client.register_script(_SET_STATUS)
        self._reopen = client.register_script(_REOPEN)
        self._repair = client.register_script(_REPAIR)
        self._moving_average = client.register_script(_MOVING_AVERAGE)

    # ---- keys ---------------------------------------------------------------------------
    def key(self, job_id: str, part: str = "") -> str:
        return f"{self.prefix}:job:{job_id}" + (f":{part}" if part else "")

    def _all_keys(self, job_id: str) -> list[str]:
        parts = ("", "chunks", "layout", "out", "fail", "flags", "deliveries", "second_pass", "result", "report",
                 "targets", "served", "route")
        return [self.key(job_id, p) for p in parts] + scheduler_keys(self.prefix, job_id)

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def active_key(self) -> str:
        return f"{self.prefix}:active"

    # ---- create -------------------------------------------------------------------------
    def create(
        self,
        job_id: str,
        meta: Mapping[str, Any],
        chunks: Mapping[int, Chunk | Mapping[str, Any]],
        ready_outputs: Mapping[int, str],
    ) -> None:
        """Write a new job: its record, its chunks (``Chunk`` models, or their dicts) and the outputs of
        chunks that need no model. Chunks are stored as JSON (pydantic's own encoder for models: ~3 µs a
        chunk against ~10 µs for dict + ``json.dumps``), with the document's layout for the merge."""
        now = time.time()
        if not self.r.hsetnx(self.key(job_id), "created_at", repr(now)):
            raise JobExists(f"job {job_id} already exists")
        record = {
            **{k: _encode(v) for k, v in meta.items()},
            "status": JobStatus.PENDING.value,
            "phase": "queued",
            "total": len(chunks),
            "done": len(ready_outputs),
            "failed": 0,
            "skipped": 0,
            "retries": 0,
            "tokens_in": 0,
            "tokens_out": 0,
        }
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.key(job_id), mapping=record)
        if chunks:
            pipe.hset(self.key(job_id, "chunks"), mapping={
                str(i): c.model_dump_json() if isinstance(c, Chunk) else json.dumps(c) for i, c in chunks.items()
            })
            pipe.set(self.key(job_id, "layout"), json.dumps(_layout(chunks)))
        if ready_outputs:
            pipe.hset(self.key(job_id, "out"), mapping={str(i): t for i, t in ready_outputs.items()})
        pipe.zadd(self.index_key, {job_id: now})
        pipe.zadd(self.active_key, {job_id: now})
        pipe.execute()

    # ---- read ---------------------------------------------------------------------------
    def meta(self, job_id: str) -> dict[str, str]:
        data = self.r.hgetall(self.key(job_id))
        if not data:
            raise JobNotFound(job_id)
        return self._repaired(job_id, data)

    def _repaired(self, job_id: str, data: dict[str, str]) -> dict[str, str]:
        """``data`` if it has every required field, else the record after ``_REPAIR`` (logged once)."""
        if all(f in data for f in REQUIRED_FIELDS):
            return data
        keys = [self.key(job_id), self.key(job_id, "chunks"), self.key(job_id, "result"), self.active_key]
        fixed = self._repair(keys=keys, args=[repr(time.time()), job_id])
        if fixed:
            log.warning("job.record_repaired", job_id=job_id, fields=",".join(map(str, fixed)))
        data = self.r.hgetall(self.key(job_id))
        if not data:
            raise JobNotFound(job_id)
        return data

    def exists(self, job_id: str) -> bool:
        return bool(self.r.exists(self.key(job_id)))

    def status(self, job_id: str) -> JobStatus | None:
        value = self.r.hget(self.key(job_id), "status")
        return JobStatus(value) if value else None

    def wait_ended(
        self, job_id: str, timeout: float, recheck: float = 1.0, on_recheck: Callable[[], None] | None = None
    ) -> JobStatus | None:
        """Block until the job has ended (its status, the moment the record says so) or ``timeout`` seconds
        pass (None), without polling: the status move publishes on ``<job key>:ended`` and this listens,
        subscribed before it first reads the status. The status is also re-read every ``recheck`` seconds, so
        a notice lost with a broken connection or a Redis fail-over costs at most that long; ``on_recheck``
        runs after each read that finds the job still running (a progress display)."""
        deadline = time.monotonic() + timeout
        listener = self.r.pubsub(ignore_subscribe_messages=True)
        try:
            listener.subscribe(self.key(job_id, "ended"))
            while True:
                status = self.status(job_id)
                if status is None:
                    raise JobNotFound(job_id)
                if status.terminal:
                    return status
                if on_recheck is not None:
                    on_recheck()
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    listener.get_message(timeout=min(left, recheck))
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    listener.close()  # resubscribe on a fresh connection; the status read says what was missed
                    listener = self.r.pubsub(ignore_subscribe_messages=True)
                    listener.subscribe(self.key(job_id, "ended"))
        finally:
            listener.close()

    def chunk(self, job_id: str, index: int) -> dict[str, Any]:
        raw = self.r.hget(self.key(job_id, "chunks"), str(index))
        if raw is None:
            raise JobNotFound(f"{job_id} chunk {index}")
        return json.loads(raw)

    def batch_state(
        self, job_id: str, indices: Iterable[int]
    ) -> tuple[dict[str, str], list[int], dict[int, dict[str, Any]]]:
        """Where a batch starts, in one round trip: the job record, those of ``indices`` with no stored
        output yet (in order), and their chunks. Raises ``JobNotFound`` if the job or one of them is gone."""
        indices = list(indices)
        fields = [str(i) for i in indices]
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.key(job_id))
        pipe.hmget(self.key(job_id, "out"), fields)
        pipe.hmget(self.key(job_id, "chunks"), fields)
        meta, stored, raw = pipe.execute() if indices else (self.meta(job_id), [], [])
        if not meta:
            raise JobNotFound(job_id)
        meta = self._repaired(job_id, meta)
        todo = [i for i, v in zip(indices, stored, strict=True) if v is None]
        chunks = dict(zip(indices, raw, strict=True))
        lost = [i for i in todo if chunks[i] is None]
        if lost:
            raise JobNotFound(f"{job_id} chunks {lost[:5]}")
        return meta, todo, {i: json.loads(chunks[i]) for i in todo}

    def chunks(self, job_id: str) -> dict[int, dict[str, Any]]:
        raw = self.r.hgetall(self.key(job_id, "chunks"))
        return {int(i): json.loads(v) for i, v in raw.items()}

    def outputs(self, job_id: str) -> dict[int, str]:
        raw = self.r.hgetall(self.key(job_id, "out"))
        return {int(i): v for i, v in raw.items()}

    def output_indices(self, job_id: str) -> set[int]:
        return {int(i) for i in self.r.hkeys(self.key(job_id, "out"))}

    def failures(self, job_id: str) -> dict[int, dict[str, Any]]:
        raw = self.r.hgetall(self.key(job_id, "fail"))
        return {int(i): json.loads(v) for i, v in raw.items()}

    def result(self, job_id: str) -> str | None:
        return self.r.get(self.key(job_id, "result"))

    def merge_inputs(
        self, job_id: str
    ) -> tuple[dict[str, str], bool, list[tuple[str, str]] | None, dict[int, str], dict[int, dict[str, Any]]]:
        """What a merge reads, in one round trip: the record, whether a result exists, the document's
        layout (each chunk's ``(prefix, suffix)`` in order; None if a chunk is missing), the outputs and the
        failures. A job written before layouts were kept has its layout read from its chunks."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.key(job_id))
        pipe.exists(self.key(job_id, "result"))
        pipe.get(self.key(job_id, "layout"))
        pipe.hgetall(self.key(job_id, "out"))
        pipe.hgetall(self.key(job_id, "fail"))
        record, has_result, raw_layout, outputs, failures = pipe.execute()
        if not record:
            raise JobNotFound(job_id)
        if raw_layout is not None:
            layout: list[tuple[str, str]] | None = [(p, s) for p, s in json.loads(raw_layout)]
        else:
            chunks = {int(i): json.loads(v) for i, v in self.r.hgetall(self.key(job_id, "chunks")).items()}
            layout = _layout(chunks) if set(chunks) == set(range(len(chunks))) else None
        return (
            self._repaired(job_id, record),
            bool(has_result),
            layout,
            {int(i): v for i, v in outputs.items()},
            {int(i): json.loads(v) for i, v in failures.items()},
        )

    def report(self, job_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self.key(job_id, "report"))
        return json.loads(raw) if raw else None

    # ---- fallback chains ----------------------------------------------------------------
    def routes(self, job_id: str, indices: Iterable[int]) -> dict[int, tuple[int, int]]:
        """Where each chunk is in its job's chain: (position, batch attempt at which it got there)."""
        indices = list(indices)
        if not indices:
            return {}
        raw = self.r.hmget(self.key(job_id, "route"), [str(i) for i in indices])
        out: dict[int, tuple[int, int]] = {}
        for i, value in zip(indices, raw, strict=True):
            if value:
                pos, _, start = str(value).partition(":")
                out[i] = (int(pos), int(start or 0))
        return out

    def record_targets(
        self, job_id: str, figures: Mapping[str, Mapping[str, float]], served: Mapping[int, str],
        routes: Mapping[int, tuple[int, int]],
    ) -> None:
        """Add one batch's per-target figures, record who served its stored chunks, move fallen-over
        chunks along the chain: one round trip."""
        pipe = self.r.pipeline(transaction=False)
        key = self.key(job_id, "targets")
        for name, values in figures.items():
            for field, amount in values.items():
                if not amount:
                    continue
                if field == "seconds":  # the only float figure (HINCRBY refuses a field HINCRBYFLOAT wrote)
                    pipe.hincrbyfloat(key, f"{name}|{field}", round(float(amount), 6))
                else:
                    pipe.hincrby(key, f"{name}|{field}", int(amount))
        for index, name in served.items():
            pipe.hsetnx(self.key(job_id, "served"), str(index), name)
        if routes:
            pipe.hset(self.key(job_id, "route"), mapping={str(i): f"{p}:{a}" for i, (p, a) in routes.items()})
        if len(pipe):
            pipe.execute()

    def served(self, job_id: str) -> dict[int, str]:
        return {int(i): v for i, v in self.r.hgetall(self.key(job_id, "served")).items()}

    def target_figures(self, job_id: str, meta: Mapping[str, str] | None = None) -> list[TargetFigures] | None:
        """Per-target figures of a job with a fallback chain (None for a job without one)."""
        m = meta if meta is not None else self.meta(job_id)
        chain = json.loads(m["chain"]) if m.get("chain") else None
        if not chain:
            return None
        raw = self.r.hgetall(self.key(job_id, "targets"))
        values: dict[str, dict[str, float]] = {}
        for field, value in raw.items():
            name, _, figure = field.partition("|")
            values.setdefault(name, {})[figure] = float(value)
        out: list[TargetFigures] = []
        for entry in chain:
            v = values.get(entry["name"], {})
            tokens_in, tokens_out = int(v.get("tokens_in", 0)), int(v.get("tokens_out", 0))
            calls = int(v.get("calls", 0))
            price = entry.get("price")
            prices = {entry["model"]: tuple(price)} if price else self.prices
            sp_in, sp_out = int(v.get("sp_tokens_in", 0)), int(v.get("sp_tokens_out", 0))
            out.append(TargetFigures(
                name=entry["name"], provider=entry.get("provider", ""), model=entry.get("model", ""),
                chunks=int(v.get("chunks", 0)), calls=calls,
                errors={k.removeprefix("err."): int(n) for k, n in sorted(v.items()) if k.startswith("err.") and n},
                skipped=int(v.get("skipped", 0)), fallovers=int(v.get("fallovers", 0)),
                tokens_in=tokens_in, tokens_out=tokens_out,
                cost_usd=cost_usd(prices, entry.get("model", ""), tokens_in, tokens_out),
                latency_seconds=round(v.get("seconds", 0.0) / calls, 4) if calls else None,
                second_passes=int(v.get("sp_calls", 0)), second_pass_tokens_in=sp_in, second_pass_tokens_out=sp_out,
                second_pass_cost_usd=cost_usd(prices, entry.get("model", ""), sp_in, sp_out),
            ))
        return out

    def job_cost(self, meta: Mapping[str, str], targets: list[TargetFigures] | None = None) -> float:
        """Estimated cost: the primary's model prices the tokens no fallback target used; each fallback
        target prices its own (its price_in/price_out, else the price table by its model)."""
        tokens_in, tokens_out = int(meta.get("tokens_in", 0)), int(meta.get("tokens_out", 0))
        others = [t for t in targets or [] if t.name != "primary"]
        rest_in = max(0, tokens_in - sum(t.tokens_in for t in others))
        rest_out = max(0, tokens_out - sum(t.tokens_out for t in others))
        primary = cost_usd(self.prices, meta.get("model", ""), rest_in, rest_out)
        return round(primary + sum(t.cost_usd for t in others), 6)

    def view(self, job_id: str, with_result: bool = True) -> JobView:
        m = self.meta(job_id)
        targets = self.target_figures(job_id, m)
        total = int(m.get("total", 0))
        done, failed, skipped = int(m.get("done", 0)), int(m.get("failed", 0)), int(m.get("skipped", 0))
        status = JobStatus(m["status"])
        pct = 100.0 if status == JobStatus.SUCCESS else (100.0 * done / total if total else 0.0)
        return JobView(
            job_id=job_id,
            status=status,
            phase=m.get("phase", ""),
            progress=Progress(
                completed=done, failed=failed, skipped=skipped, total=total, percentage=round(pct, 2)
            ),
            provider=m.get("provider", ""),
            model=m.get("model", ""),
            style=m.get("style", ""),
            retries=int(m.get("retries", 0)),
            tokens_in=int(m.get("tokens_in", 0)),
            tokens_out=int(m.get("tokens_out", 0)),
            cost_usd=self.job_cost(m, targets),
            created_at=float(m["created_at"]),
            started_at=float(m["started_at"]) if m.get("started_at") else None,
            finished_at=float(m["finished_at"]) if m.get("finished_at") else None,
            error=m.get("error") or None,
            dead_letters=failed,
            verification=self.report(job_id) if with_result else None,
            ai_tell_score=_tell_scores(m),
            targets=targets,
            second_pass=_second_pass(m, self.prices, targets),
            humanized_text=self.result(job_id) if with_result and status == JobStatus.SUCCESS else None,
        )

    def list_jobs(self, offset: int = 0, limit: int = 50) -> list[str]:
        return list(self.r.zrevrange(self.index_key, offset, offset + limit - 1))

    # ---- write --------------------------------------------------------------------------
    def save_output(self, job_id: str, index: int, text: str, tokens_in: int = 0, tokens_out: int = 0) -> bool:
        """Store a chunk's output if none is stored yet; True when this call was the first writer."""
        return self.save_outputs([ChunkOutput(job_id, index, text, tokens_in, tokens_out)])[0]

    def save_outputs(self, outputs: Sequence[ChunkOutput]) -> list[bool]:
        """``save_output`` for many chunks (of any jobs) in one round trip; True for each first writer.

        The script goes by ``EVAL`` (Redis caches it by digest), not ``EVALSHA``: a redis-py pipeline with
        registered scripts spends a second round trip on ``SCRIPT EXISTS`` before every execute."""
        pipe = self.r.pipeline(transaction=False)
        now = time.time()
        saves: list[int] = []  # positions of the script results in the pipeline
        for o in outputs:
            saves.append(len(pipe))
            keys = [self.key(o.job_id), self.key(o.job_id, "out"), self.active_key]
            pipe.eval(_SAVE_OUTPUT, len(keys), *keys, o.index, o.text, o.tokens_in, o.tokens_out, now, o.job_id)
            if o.cache_key and o.cache_ttl > 0:
                pipe.set(o.cache_key, o.text, ex=o.cache_ttl)
        results = pipe.execute()
        return [bool(results[i]) for i in saves]

    def record_failure(self, job_id: str, index: int, info: Mapping[str, Any]) -> bool:
        keys = [self.key(job_id), self.key(job_id, "fail"), self.active_key]
        return bool(self._record_failure(keys=keys, args=[index, json.dumps(info), time.time(), job_id]))

    def keep_original(
        self, job_id: str, index: int, text: str, info: Mapping[str, Any], flag: str,
        tokens_in: int = 0, tokens_out: int = 0,
    ) -> bool:
        """Record a chunk's failure while its original ``text`` stays in the document (flagged ``flag`` for
        verification). False if an output was stored first (a rewrite that arrived meanwhile wins)."""
        keys = [self.key(job_id), self.key(job_id, "out"), self.key(job_id, "fail"), self.key(job_id, "flags"),
                self.active_key]
        args: list[Any] = [index, text, tokens_in, tokens_out, json.dumps(info), flag, time.time(), job_id]
        return bool(self._keep_original(keys=keys, args=args))

    def drop_kept_original(self, job_id: str, index: int) -> None:
        """Forget the original text kept for a failed chunk (before it is replayed)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.key(job_id, "out"), str(index))
        pipe.hdel(self.key(job_id, "flags"), str(index))
        pipe.execute()

    def count_starts(self, job_id: str, indices: Iterable[int], amount: int = 1) -> dict[int, int]:
        """Count a start of each chunk's call (``amount=-1``: an attempt that reported back, e.g. failed and
        will retry). What remains counts the starts that never reported: the worker died (poison detection).
        Returns each chunk's count after the change."""
        indices = list(indices)
        pipe = self.r.pipeline(transaction=False)
        for i in indices:
            pipe.hincrby(self.key(job_id, "deliveries"), str(i), amount)
        return {i: int(n) for i, n in zip(indices, pipe.execute(), strict=True)}

    def active_jobs(self, idle_for: float = 0.0) -> list[tuple[str, float]]:
        """Unfinished jobs whose last progress is at least ``idle_for`` seconds old."""
        upper = time.time() - idle_for
        rows = self.r.zrangebyscore(self.active_key, "-inf", upper, withscores=True)
        return [(job_id, float(score)) for job_id, score in rows]

    def outstanding_chunks(self, max_jobs: int = 5000) -> int | None:
        """Chunks of the unfinished jobs with neither an output nor a dead letter: the chunk work still
        queued or in flight. None when more than ``max_jobs`` jobs are unfinished (too many to read at once).
        (``skipped`` is not subtracted: chunks are skipped only once a job has ended, and a batch skipped
        around a resume could count chunks that are done.)"""
        if self.r.zcard(self.active_key) > max_jobs:
            return None
        pipe = self.r.pipeline(transaction=False)
        for job_id in self.r.zrange(self.active_key, 0, -1):
            pipe.hmget(self.key(job_id), "total", "done", "failed")
        left = 0
        for total, *ended in pipe.execute():
            if total is not None:  # a job deleted meanwhile
                left += max(0, int(total) - sum(int(n or 0) for n in ended))
        return left

    def touch(self, job_id: str, quiet_for: float = 0.0) -> None:
        """Mark progress now; ``quiet_for``: no progress is expected for that many seconds (a retry countdown)."""
        self.r.zadd(self.active_key, {job_id: time.time() + quiet_for}, xx=True)

    def clear_failure(self, job_id: str, index: int) -> bool:
        keys = [self.key(job_id), self.key(job_id, "fail")]
        return bool(self._clear_failure(keys=keys, args=[index]))

    def incr(self, job_id: str, field: str, amount: int = 1) -> None:
        self.r.hincrby(self.key(job_id), field, amount)

    def set_fields(self, job_id: str, **fields: Any) -> None:
        self.r.hset(self.key(job_id), mapping={k: _encode(v) for k, v in fields.items()})

    def set_status(
        self, job_id: str, status: JobStatus, allowed_from: Iterable[JobStatus] | None = None, **fields: Any
    ) -> bool:
        """Move to ``status`` unless the job already ended (or is not in ``allowed_from``); True if it moved.
        Transitions go through ``jobs/lifecycle.py``, which passes its table's states."""
        allowed = "," + ",".join(s.value for s in allowed_from) + "," if allowed_from is not None else ""
        args: list[Any] = [status.value, repr(time.time()), job_id, allowed]
        for k, v in fields.items():
            args += [k, _encode(v)]
        rc = self._set_status(keys=[self.key(job_id), self.active_key], args=args)
        if rc == -1:
            raise JobNotFound(job_id)
        if rc == 1 and status in TERMINAL:
            self.expire(job_id)
        return bool(rc == 1)

    def reopen(self, job_id: str, **fields: Any) -> None:
        """Put an ended job back to PROGRESS (dead-letter replay, re-drive)."""
        args: list[Any] = [JobStatus.PROGRESS.value, repr(time.time()), job_id]
        for k, v in fields.items():
            args += [k, _encode(v)]
        if self._reopen(keys=[self.key(job_id), self.active_key], args=args) == -1:
            raise JobNotFound(job_id)
        self.r.delete(self.key(job_id, "result"), self.key(job_id, "report"))
        for key in self._all_keys(job_id):
            self.r.persist(key)

    def save_result(self, job_id: str, text: str, **fields: Any) -> bool:
        """Store the document unless one exists (first writer wins; True if this was the first) and set
        ``fields`` on the record, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.key(job_id, "result"), text, nx=True)
        if fields:
            pipe.hset(self.key(job_id), mapping={k: _encode(v) for k, v in fields.items()})
        return bool(pipe.execute()[0])

    def save_report(self, job_id: str, report: Mapping[str, Any]) -> None:
        self.r.set(self.key(job_id, "report"), json.dumps(report))

    def expire(self, job_id: str, ttl: int | None = None) -> None:
        pipe = self.r.pipeline(transaction=False)
        for key in self._all_keys(job_id):
            pipe.expire(key, ttl or self.ttl)
        pipe.execute()

    # ---- bookkeeping other modules need (they never use the client for job data themselves) -------
    def next_round(self, job_id: str) -> int:
        """A new re-drive round of the job (task ids of its batches and merge carry it)."""
        return int(self.r.hincrby(self.key(job_id), "rounds", 1))

    def forget_active(self, job_id: str) -> None:
        self.r.zrem(self.active_key, job_id)

    def active_job_ids(self) -> list[str]:
        return [str(j) for j in self.r.zrange(self.active_key, 0, -1)]

    def job_count(self) -> int:
        return int(self.r.zcard(self.index_key))

    def field(self, job_id: str, name: str) -> str | None:
        value = self.r.hget(self.key(job_id), name)
        return None if value is None else str(value)

    def fields_of(self, job_ids: Sequence[str], names: Sequence[str]) -> list[list[str | None]]:
        """``names`` of each job record, one pipelined read (None where a job or field is missing)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.key(job_id), list(names))
        return [list(row) for row in pipe.execute()] if job_ids else []

    def recent_job_ids(self, limit: int) -> list[str]:
        return [str(i) for i in self.r.zrevrange(self.index_key, 0, limit - 1)]

    def flags(self, job_id: str) -> dict[int, str]:
        """Verification flags per chunk (altered placeholders, originals kept)."""
        return {int(k): str(v) for k, v in self.r.hgetall(self.key(job_id, "flags")).items()}

    def flag(self, job_id: str, index: int, text: str) -> None:
        self.r.hset(self.key(job_id, "flags"), str(index), text)

    def add_tokens(self, job_id: str, tokens_in: int, tokens_out: int) -> None:
        """Tokens paid for by calls whose reply was not stored."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(self.key(job_id), "tokens_in", tokens_in)
        pipe.hincrby(self.key(job_id), "tokens_out", tokens_out)
        pipe.execute()

    def clear_route(self, job_id: str, index: int) -> None:
        """A replayed chunk starts its fallback chain afresh."""
        self.r.hdel(self.key(job_id, "route"), str(index))

    def chunk_seconds(self) -> float | None:
        """The moving average of one chunk's time (for estimates and the autoscaler)."""
        raw = self.r.get(f"{self.prefix}:stats:chunk_seconds")
        return float(raw) if raw else None

    def record_chunk_seconds(self, seconds: float) -> None:
        self._moving_average(keys=[f"{self.prefix}:stats:chunk_seconds"], args=[repr(seconds)])

    def cached_outputs(self, keys: Mapping[int, str]) -> dict[int, str]:
        """Rewrites of identical chunks kept in the chunk cache, by index (``worker/chunk_cache.py`` keys)."""
        from humanizer.jobs import chunk_cache

        return chunk_cache.get_many(self.r, keys)

    def count_finished(self, ok: int = 0, errors: int = 0, now: float | None = None) -> None:
        """Chunks finished (stored or cached / dead-lettered) for ``humanizer monitor``'s throughput
        (per-minute counters, read by ``monitoring/throughput.py``)."""
        minute = int((now or time.time()) // 60)
        pipe = self.r.pipeline(transaction=False)
        for kind, n in (("ok", ok), ("error", errors)):
            if n > 0:
                pipe.incrby(throughput_key(self.prefix, kind, minute), n)
                pipe.expire(throughput_key(self.prefix, kind, minute), THROUGHPUT_KEEP_SECONDS)
        if len(pipe):
            pipe.execute()

    def claim(self, name: str, owner: str, seconds: float) -> bool:
        """A lease ``<prefix>:<name>`` for ``seconds`` (SET NX EX): True for the one caller that got it."""
        return bool(self.r.set(f"{self.prefix}:{name}", owner, nx=True, ex=max(1, int(seconds))))

    def redis_run_id(self) -> str:
        """The Redis server's run id: a new one means it restarted."""
        return str(self.r.info("server").get("run_id") or "")

    def eval_job_script(self, script: str, job_id: str, parts: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua ``script`` over the job's keys ``parts`` ("" is the record) — for a module that owns
        the meaning of some job fields (the second pass's budget) but not the key layout."""
        keys = [self.key(job_id, p) for p in parts]
        return self.r.eval(script, len(keys), *keys, *args)

    def incr_fields(self, job_id: str, counts: Mapping[str, int], part_fields: Mapping[str, Mapping[str, str]]) -> None:
        """Add ``counts`` to fields of the job record and set ``part_fields`` (part -> field -> value), at once."""
        pipe = self.r.pipeline(transaction=False)
        for name, n in counts.items():
            pipe.hincrby(self.key(job_id), name, n)
        for part, values in part_fields.items():
            pipe.hset(self.key(job_id, part), mapping=dict(values))
        pipe.execute()

    def delete(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.r.delete(*self._all_keys(job_id))
            self.r.zrem(self.index_key, job_id)
            self.r.zrem(self.active_key, job_id)


def _tell_scores(meta: Mapping[str, str]) -> TellScores | None:
    before, after = meta.get("tell_score_before"), meta.get("tell_score_after")
    if not before or not after:
        return None
    return TellScores(before=float(before), after=float(after))


def _second_pass(
    meta: Mapping[str, str], prices: Mapping[str, tuple[float, float]], targets: list[TargetFigures] | None = None
) -> SecondPassFigures | None:
    """The job's second-pass figures, once it has had one (or was refused one by its budget). Their cost is
    priced as the job's (``JobStore.job_cost``): what fallback targets answered at their prices, the rest at
    the primary's model."""
    calls, over = int(meta.get("second_pass_calls", 0)), int(meta.get("second_pass_over_budget", 0))
    if not calls and not over:
        return None
    tokens_in, tokens_out = int(meta.get("second_pass_tokens_in", 0)), int(meta.get("second_pass_tokens_out", 0))
    others = [t for t in targets or [] if t.name != "primary"]
    rest_in = max(0, tokens_in - sum(t.second_pass_tokens_in for t in others))
    rest_out = max(0, tokens_out - sum(t.second_pass_tokens_out for t in others))
    cost = cost_usd(prices, meta.get("model", ""), rest_in, rest_out) + sum(t.second_pass_cost_usd for t in others)
    return SecondPassFigures(
        calls=calls, kept=int(meta.get("second_pass_kept", 0)), over_budget=over, tokens_in=tokens_in,
        tokens_out=tokens_out, cost_usd=round(cost, 6),
    )


def _encode(value: Any) -> str | int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    if value is None:
        return ""
    return json.dumps(value)
