"""The fair scheduler: which job's batches go to the workers next.

Celery's queues are FIFO, so a job that sent all its batches at once made every later job wait behind
it. Instead, a job's batches are *held* here (one Redis list per job) and *released* to the chunk queue
a window at a time: the window is what the live workers hold at once (each worker process registers
its capacity, one batch per Celery thread), so the queue itself stays about empty and a new job's first
batch is taken by the next thread that frees up; inside the worker its calls get the next free call
slots (``worker/engine.FairSlots``).

Which job a free place in the window goes to is decided by stride scheduling (a deterministic
weighted round-robin): every job with held batches has a *pass*; the lowest pass is served and advanced
by its *stride*, ``tenant's active jobs / (tenant weight x priority weight)``. So jobs of one priority
progress at equal rates, ``high`` gets 4 and ``normal`` 2 shares to ``low``'s 1 (low never starves),
and a tenant (an API token, or a HumanizeJob's namespace) gets its weight's share however many jobs it
sends. A new job starts at the current virtual time (the last pass served), so it neither jumps the
queue by more than its share nor waits for the older jobs to finish.

A job completes when its last released batch reports back and none is held: the batch task that
empties both sends ``merge`` (our own chord counting; a Celery chord needs every header task published
at once). Everything is idempotent: a redelivered batch reports back twice and only the first counts;
a lost message or a lost release (Redis restarted between AOF fsyncs) leaves the job without progress,
and the reconciler re-drives it (``jobs/reconcile.py``), which forgets its released batches first.

Released batches count against the window until they report back. A batch retried with a countdown
stays released (it is the same work); entries older than ``stale_seconds`` are dropped (their messages
were lost; a late report of one no longer counts, and the reconciler re-drives its job).

Keys (all under ``<prefix>:sched:``): ``pending:<job>`` (list of held batches, JSON ``[round, [indices]]``),
``job:<job>`` (hash: tenant, weight, level, held chunks, latest round), ``jobs`` (zset job -> pass,
jobs with held batches), ``out:<job>`` (set of its released batch ids), ``released`` (zset
``<job>|<batch id>`` -> release time, for the window), ``tenants`` (hash tenant -> jobs with held
batches), ``vtime`` (the last pass served), ``held_chunks`` (chunks held, for the autoscaler),
``workers`` (zset ``<node>|<capacity>|<spare>`` -> expiry). ``docs/architecture.md`` draws them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Shares per job priority (stride scheduling weights) and the Celery priority of released messages.
PRIORITY_WEIGHTS = {"high": 4.0, "normal": 2.0, "low": 1.0}
CELERY_LEVELS = {"high": 0, "normal": 3, "low": 6}

# ARGV: prefix, job, tenant, weight, level, round, ttl, held chunks, batches (JSON strings)...
_HOLD = """
local p, job = ARGV[1], ARGV[2]
local jk, pk = p .. ':sched:job:' .. job, p .. ':sched:pending:' .. job
redis.call('HSET', jk, 'tenant', ARGV[3], 'weight', ARGV[4], 'level', ARGV[5], 'round', ARGV[6])
redis.call('HINCRBY', jk, 'held_chunks', ARGV[8])
redis.call('INCRBY', p .. ':sched:held_chunks', ARGV[8])
redis.call('EXPIRE', jk, ARGV[7])
for i = 9, #ARGV do redis.call('RPUSH', pk, ARGV[i]) end
redis.call('EXPIRE', pk, ARGV[7])
if redis.call('ZSCORE', p .. ':sched:jobs', job) == false then
  local vt = tonumber(redis.call('GET', p .. ':sched:vtime') or '0')
  redis.call('ZADD', p .. ':sched:jobs', vt, job)
  redis.call('HINCRBY', p .. ':sched:tenants', ARGV[3], 1)
end
return 1
"""

# Drop a job from the scheduler's held work (it ended, or it is re-driven from scratch).
_DROP_LUA = """
local function drop(p, job, jk)
  local tenant = redis.call('HGET', jk, 'tenant')
  local held = tonumber(redis.call('HGET', jk, 'held_chunks') or '0')
  if held > 0 then
    redis.call('DECRBY', p .. ':sched:held_chunks', held)
    redis.call('HSET', jk, 'held_chunks', 0)
  end
  redis.call('DEL', p .. ':sched:pending:' .. job)
  if redis.call('ZREM', p .. ':sched:jobs', job) == 1 and tenant then
    if redis.call('HINCRBY', p .. ':sched:tenants', tenant, -1) <= 0 then
      redis.call('HDEL', p .. ':sched:tenants', tenant)
    end
  end
end
"""

# ARGV: prefix, now, window without workers, max to release, stale before (time), tenant weights (JSON),
# fixed window (0: the registered workers' capacity).
# Returns a flat list: job, level, batch, job, level, batch, ...
_RELEASE = (
    _DROP_LUA
    + """
local p, now = ARGV[1], tonumber(ARGV[2])
local weights = cjson.decode(ARGV[6])
redis.call('ZREMRANGEBYSCORE', p .. ':sched:workers', '-inf', now)
local capacity, spares = 0, 0
for _, member in ipairs(redis.call('ZRANGE', p .. ':sched:workers', 0, -1)) do
  local c, s = string.match(member, '|(%d+)|(%d+)$')
  capacity = capacity + tonumber(c or '0')
  spares = spares + tonumber(s or '0')
end
local window = capacity
if capacity == 0 then window = tonumber(ARGV[3]) end
if tonumber(ARGV[7]) > 0 then window, spares = tonumber(ARGV[7]), 0 end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', p .. ':sched:released', '-inf', '(' .. ARGV[5], 'LIMIT', 0, 100)) do
  local job, id = string.match(member, '^(.*)|(.*)$')
  if job then redis.call('SREM', p .. ':sched:out:' .. job, id) end
  redis.call('ZREM', p .. ':sched:released', member)
end
local released = redis.call('ZCARD', p .. ':sched:released')
local out, limit = {}, tonumber(ARGV[4])
while #out < 3 * limit and released < window + spares do
  local job, pass
  if released < window then
    local top = redis.call('ZRANGE', p .. ':sched:jobs', 0, 0, 'WITHSCORES')
    if #top == 0 then break end
    job, pass = top[1], tonumber(top[2])
  else
    -- a spare place: only for a job with nothing released (a new job's first batch), lowest pass first
    local top = redis.call('ZRANGE', p .. ':sched:jobs', 0, 63, 'WITHSCORES')
    for i = 1, #top, 2 do
      if redis.call('SCARD', p .. ':sched:out:' .. top[i]) == 0 then
        job, pass = top[i], tonumber(top[i + 1])
        break
      end
    end
    if not job then break end
  end
  local jk = p .. ':sched:job:' .. job
  local status = redis.call('HGET', p .. ':job:' .. job, 'status')
  local ended = status == 'SUCCESS' or status == 'FAILURE' or status == 'CANCELLED' or status == 'SUSPENDED'
  if status == false or ended then
    drop(p, job, jk)
  else
    local spec = redis.call('LPOP', p .. ':sched:pending:' .. job)
    if not spec then
      drop(p, job, jk)
    else
      local info = redis.call('HMGET', jk, 'tenant', 'weight', 'level')
      local tenant = info[1] or 'default'
      local share = tonumber(weights[tenant] or 1) * tonumber(info[2] or 1)
      local jobs = tonumber(redis.call('HGET', p .. ':sched:tenants', tenant) or '1')
      redis.call('SET', p .. ':sched:vtime', tostring(pass))
      local batch = cjson.decode(spec)
      local n = #batch[2]
      redis.call('HINCRBY', jk, 'held_chunks', -n)
      redis.call('DECRBY', p .. ':sched:held_chunks', n)
      local id = job .. ':' .. batch[2][1]
      if tonumber(batch[1]) > 0 then id = id .. ':r' .. batch[1] end
      redis.call('SADD', p .. ':sched:out:' .. job, id)
      redis.call('EXPIRE', p .. ':sched:out:' .. job, 86400)
      redis.call('ZADD', p .. ':sched:released', now, job .. '|' .. id)
      released = released + 1
      out[#out + 1] = job
      out[#out + 1] = info[3] or '3'
      out[#out + 1] = spec
      if redis.call('LLEN', p .. ':sched:pending:' .. job) == 0 then
        drop(p, job, jk)
      else
        redis.call('ZADD', p .. ':sched:jobs', pass + jobs / math.max(share, 0.001), job)
      end
    end
  end
end
return out
"""
)

# ARGV: prefix, job, batch id. 1: this report emptied the job (send merge); 0: not the last; -1: a repeat.
_COMPLETE = """
local p, job = ARGV[1], ARGV[2]
if redis.call('ZREM', p .. ':sched:released', job .. '|' .. ARGV[3]) == 0 then return -1 end
redis.call('SREM', p .. ':sched:out:' .. job, ARGV[3])
if redis.call('SCARD', p .. ':sched:out:' .. job) > 0 then return 0 end
if redis.call('LLEN', p .. ':sched:pending:' .. job) > 0 then return 0 end
return 1
"""

# ARGV: prefix, job. Forget the job's released batches (the reconciler re-drives them) and its held ones.
_FORGET = (
    _DROP_LUA
    + """
local p, job = ARGV[1], ARGV[2]
for _, id in ipairs(redis.call('SMEMBERS', p .. ':sched:out:' .. job)) do
  redis.call('ZREM', p .. ':sched:released', job .. '|' .. id)
end
redis.call('DEL', p .. ':sched:out:' .. job)
drop(p, job, p .. ':sched:job:' .. job)
return 1
"""
)


@dataclass(frozen=True)
class Release:
    """One batch to send now: ``job_id``'s ``indices`` in round ``round_`` at Celery priority ``level``."""

    job_id: str
    level: int
    round_: int
    indices: list[int]


def job_keys(prefix: str, job_id: str) -> list[str]:
    """The scheduler's keys of one job (expired and deleted with the job's record)."""
    return [f"{prefix}:sched:{part}:{job_id}" for part in ("job", "pending", "out")]


def worker_capacity(concurrency: int) -> int:
    """Batches one worker process holds: one per thread that takes messages (``CELERY_WORKER_CONCURRENCY``,
    about 2 x its call slots' worth). Fewer would leave threads, and then call slots, idle behind an
    uneven spread of messages between processes; a new job's batch does not wait behind the ones a
    worker holds, because it is taken by the worker's spare thread (``SPARE_THREADS``) and its calls get
    the next free slots (``worker/engine.FairSlots``)."""
    return max(1, concurrency)


#: Pool threads a worker runs beyond its capacity (the threads pool only). The window's spare places are
#: one per such thread and go only to a job with no batch released, so a new job's first batch is taken
#: at once, before the call slots its neighbours free are handed to batches already waiting; without
#: it, it waited for a batch to finish and then for the next wave of slots (docs/architecture.md).
SPARE_THREADS = 1


class Scheduler:
    """Holds and releases the batches of the jobs of one key prefix (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        tenant_weights: Mapping[str, float] | None = None,
        min_window: int = 4,
        fixed_window: int = 0,
        stale_seconds: float = 900.0,
        ttl_seconds: int = 7 * 24 * 3600,
    ) -> None:
        """``min_window``: batches released while no worker is registered (so a Deployment scaled to zero
        still sees work in its queue); ``fixed_window`` > 0: that many whatever the workers (very large:
        every batch at once, plain FIFO dispatch)."""
        self.r, self.prefix = client, prefix
        self.weights_json = json.dumps({str(k): float(v) for k, v in (tenant_weights or {}).items()})
        self.min_window, self.stale_seconds, self.ttl = max(1, min_window), stale_seconds, ttl_seconds
        self.fixed_window = max(0, fixed_window)
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)
        self._complete = client.register_script(_COMPLETE)
        self._forget = client.register_script(_FORGET)

    def key(self, part: str) -> str:
        return f"{self.prefix}:sched:{part}"

    def hold(
        self,
        job_id: str,
        batches: Sequence[Sequence[int]],
        *,
        round_: int = 0,
        priority: str = "normal",
        tenant: str = "default",
    ) -> None:
        """Queue ``batches`` of ``job_id`` behind its earlier held ones."""
        if not batches:
            return
        specs = [json.dumps([round_, list(b)], separators=(",", ":")) for b in batches]
        self._hold(
            args=[
                self.prefix,
                job_id,
                tenant or "default",
                PRIORITY_WEIGHTS.get(priority, 2.0),
                CELERY_LEVELS.get(priority, 3),
                round_,
                self.ttl,
                sum(len(b) for b in batches),
                *specs,
            ]
        )

    def release(self, max_batches: int = 256) -> list[Release]:
        """Take the batches that fit in the window now, fairly across jobs; the caller sends them."""
        now = time.time()
        flat = self._release(
            args=[
                self.prefix,
                repr(now),
                self.min_window,
                max_batches,
                repr(now - self.stale_seconds),
                self.weights_json,
                self.fixed_window,
            ]
        )
        out: list[Release] = []
        for k in range(0, len(flat), 3):
            round_, indices = json.loads(flat[k + 2])
            out.append(Release(str(flat[k]), int(flat[k + 1]), int(round_), [int(i) for i in indices]))
        return out

    def complete(self, job_id: str, batch_id: str) -> bool:
        """A released batch reported back (done, or ended for good); True when it was the job's last."""
        return int(self._complete(args=[self.prefix, job_id, batch_id])) == 1

    def latest_round(self, job_id: str) -> int:
        return int(self.r.hget(self.key(f"job:{job_id}"), "round") or 0)

    def forget(self, job_id: str) -> None:
        """Stop counting the job's released batches and drop its held ones (before a re-drive)."""
        self._forget(args=[self.prefix, job_id])

    def register_worker(self, node: str, capacity: int, ttl: float = 30.0, spare: int = 0) -> None:
        """A worker process says it can hold ``capacity`` batches, and ``spare`` more for jobs with none
        released, for the next ``ttl`` seconds."""
        workers = self.key("workers")
        pipe = self.r.pipeline(transaction=True)
        for member in self.r.zrangebyscore(workers, "-inf", "+inf"):
            if _member_node(member) == node:
                pipe.zrem(workers, member)
        pipe.zadd(workers, {f"{node}|{int(capacity)}|{max(0, int(spare))}": time.time() + ttl})
        pipe.execute()

    def unregister_worker(self, node: str) -> None:
        workers = self.key("workers")
        for member in self.r.zrange(workers, 0, -1):
            if _member_node(member) == node:
                self.r.zrem(workers, member)

    def held_chunks(self) -> int:
        """Chunks held here, not yet released to the queue (work for the autoscaler)."""
        return max(0, int(self.r.get(self.key("held_chunks")) or 0))

    def snapshot(self) -> dict[str, Any]:
        """What the scheduler holds now (for ``humanizer monitor`` and tests)."""
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.zrange(self.key("jobs"), 0, -1, withscores=True)
        pipe.zcount(self.key("released"), repr(now - self.stale_seconds), "+inf")
        pipe.zrangebyscore(self.key("workers"), repr(now), "+inf")
        pipe.get(self.key("held_chunks"))
        jobs, released, workers, held = pipe.execute()
        capacity = sum(int(str(m).rsplit("|", 2)[1]) for m in workers)
        spares = 0 if self.fixed_window else sum(int(str(m).rsplit("|", 2)[2]) for m in workers)
        return {
            "jobs": {str(j): float(s) for j, s in jobs},
            "released": int(released),
            "window": self.fixed_window or capacity or self.min_window,
            "spare": spares,
            "workers": len(workers),
            "held_chunks": int(held or 0),
        }


def _member_node(member: Any) -> str:
    """The node of a ``workers`` member ``<node>|<capacity>|<spare>``."""
    return str(member).rsplit("|", 2)[0]
