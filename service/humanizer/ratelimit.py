"""A cluster-wide rate limiter shared through Redis: requests and tokens per minute per provider/model.

It is a reservation-style GCRA ("generic cell rate algorithm"): every call reserves the next free slot
atomically in Redis (a Lua script using Redis' own clock, so all workers on all hosts agree) and is told
how long to wait for it. Calls are therefore spaced evenly at the configured rate, instead of bursting
into the provider and collecting 429s. ``burst_seconds`` lets a short burst through after idle time.

Tokens are not known before the call, so a call reserves an estimate and :meth:`RateLimiter.settle`
books the difference afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

# KEYS: rpm key, tpm key ; ARGV: req_interval_us (0 = off), tok_interval_us (0 = off), tokens, burst_us, ttl_s
# Returns the wait in microseconds before the reserved slot.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local function reserve(key, cost)
  if cost <= 0 then return 0 end
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local burst = tonumber(ARGV[4])
  local w = tat - burst - now
  if w < 0 then w = 0 end
  redis.call('SET', key, tat + cost, 'EX', tonumber(ARGV[5]))
  return w
end
local w1 = reserve(KEYS[1], tonumber(ARGV[1]))
local w2 = reserve(KEYS[2], tonumber(ARGV[2]) * tonumber(ARGV[3]))
if w1 > wait then wait = w1 end
if w2 > wait then wait = w2 end
return wait
"""

# KEYS: tpm key ; ARGV: tok_interval_us, token delta (may be negative), ttl
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + tonumber(ARGV[1]) * tonumber(ARGV[2])
if new < now then new = now end
redis.call('SET', KEYS[1], new, 'EX', tonumber(ARGV[3]))
return 1
"""


@dataclass(frozen=True)
class Limits:
    requests_per_minute: float = 0.0  # 0 = no limit
    tokens_per_minute: float = 0.0
    burst_seconds: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.requests_per_minute > 0 or self.tokens_per_minute > 0


class RateLimiter:
    def __init__(self, client: redis.Redis, name: str, limits: Limits, prefix: str = "hz") -> None:
        self.limits = limits
        self.rpm_key = f"{prefix}:rl:{name}:req"
        self.tpm_key = f"{prefix}:rl:{name}:tok"
        self._req_us = int(60_000_000 / limits.requests_per_minute) if limits.requests_per_minute > 0 else 0
        self._tok_us = 60_000_000 / limits.tokens_per_minute if limits.tokens_per_minute > 0 else 0.0
        self._burst_us = int(limits.burst_seconds * 1_000_000)
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)

    def reserve(self, tokens: int = 0) -> float:
        """Reserve one request (and ``tokens``); return seconds to wait before sending it."""
        if not self.limits.enabled:
            return 0.0
        wait_us = self._reserve(
            keys=[self.rpm_key, self.tpm_key],
            args=[self._req_us, int(self._tok_us), tokens, self._burst_us, 300],
        )
        return int(wait_us) / 1_000_000

    def settle(self, estimated_tokens: int, actual_tokens: int) -> None:
        """Correct the token reservation once the real usage is known."""
        if self._tok_us <= 0 or actual_tokens == estimated_tokens:
            return
        self._settle(keys=[self.tpm_key], args=[int(self._tok_us), actual_tokens - estimated_tokens, 300])
