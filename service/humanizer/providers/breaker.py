"""A circuit breaker per fallback target, its state shared by every worker process through Redis.

States: ``closed`` (calls go through; consecutive failures are counted), ``open`` (calls skip the target
for ``cooldown`` seconds), ``half_open`` (after the cool-down one caller, the *probe*, may call; the
others keep skipping it until the probe reports or its lease runs out). ``failures`` consecutive
failures open it; a failure of the probe opens it again; a success closes it, from any state (the
target answered). Which errors count as failures: ``targets.counts_for_breaker``.

The transitions are pure functions (``decide``, ``after_success``, ``after_failure``) over a
``BreakerState``; :class:`CircuitBreaker` applies them to one Redis hash in an optimistic transaction
(WATCH/MULTI), so concurrent workers never lose an update and exactly one of them wins a probe.

Keys (this module owns them)::

    <prefix>:breaker:<target>   hash  state, failures, opened_at, probe_until (unix seconds); 1 day TTL

A process reads the hash at most every ``cache_seconds`` (1 s) while it sees the breaker closed, so a
healthy target costs no Redis round trip per call; a breaker opened elsewhere is seen within that time.
Times are the workers' wall clocks (``time.time()``): hosts need roughly synchronised clocks (NTP), an
offset only shifts the cool-down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, HALF_OPEN, OPEN)
KEY_TTL_SECONDS = 86400


@dataclass(frozen=True)
class BreakerConfig:
    failures: int = 5  # consecutive failures that open the breaker (0: never opens)
    cooldown: float = 30.0  # seconds open before a half-open probe
    probe_lease: float = 65.0  # seconds a probe may take before another caller may probe instead


@dataclass(frozen=True)
class BreakerState:
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probe_until: float = 0.0

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> BreakerState:
        if not raw:
            return cls()
        state = raw.get("state", CLOSED)
        return cls(
            state=state if state in STATES else CLOSED,
            failures=int(raw.get("failures") or 0),
            opened_at=float(raw.get("opened_at") or 0.0),
            probe_until=float(raw.get("probe_until") or 0.0),
        )

    def to_hash(self) -> dict[str, str]:
        return {"state": self.state, "failures": str(self.failures), "opened_at": repr(self.opened_at),
                "probe_until": repr(self.probe_until)}


def decide(st: BreakerState, now: float, cfg: BreakerConfig) -> tuple[bool, BreakerState]:
    """May a call go to the target now? Returns (allowed, the state after this decision)."""
    if st.state == CLOSED:
        return True, st
    if st.state == OPEN:
        if now - st.opened_at >= cfg.cooldown:  # cool-down over: this caller is the probe
            return True, replace(st, state=HALF_OPEN, probe_until=now + cfg.probe_lease)
        return False, st
    if now >= st.probe_until:  # half-open, and the probe never reported (its worker died): probe again
        return True, replace(st, probe_until=now + cfg.probe_lease)
    return False, st


def after_success(st: BreakerState) -> BreakerState:
    return BreakerState()


def after_failure(st: BreakerState, now: float, cfg: BreakerConfig) -> BreakerState:
    if st.state == HALF_OPEN:  # the probe failed: another cool-down
        return BreakerState(OPEN, st.failures + 1, now, 0.0)
    if st.state == OPEN:  # a call started before it opened, ending now: nothing new
        return st
    failures = st.failures + 1
    if cfg.failures > 0 and failures >= cfg.failures:
        return BreakerState(OPEN, failures, now, 0.0)
    return replace(st, failures=failures)


def seconds_until_probe(st: BreakerState, now: float, cfg: BreakerConfig) -> float:
    """How long until a call may be tried again (0 when one may go now)."""
    if st.state == OPEN:
        return max(0.0, st.opened_at + cfg.cooldown - now)
    if st.state == HALF_OPEN:
        return max(0.0, st.probe_until - now)
    return 0.0


Transition = Callable[[str, str, str], None]  # (target, from state, to state)


class CircuitBreaker:
    """One target's breaker. ``allow()`` before a call; ``record(ok)`` after it (only for calls that
    count: a success, or a failure for which ``counts_for_breaker`` holds)."""

    def __init__(
        self, client: Any, target: str, key_id: str, cfg: BreakerConfig, prefix: str = "hz",
        on_transition: Transition | None = None, cache_seconds: float = 1.0, clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = client
        self.target = target
        self.key = f"{prefix}:breaker:{key_id}"
        self.cfg = cfg
        self.on_transition = on_transition
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._seen: BreakerState = BreakerState()
        self._seen_at = float("-inf")

    # ---- reads --------------------------------------------------------------------------------
    def state(self, fresh: bool = False) -> BreakerState:
        now = time.monotonic()
        if fresh or now - self._seen_at >= self.cache_seconds or self._seen.state != CLOSED:
            self._seen = BreakerState.from_hash(self.r.hgetall(self.key))
            self._seen_at = now
        return self._seen

    def wait_seconds(self) -> float:
        return seconds_until_probe(self.state(), self.clock(), self.cfg)

    # ---- decisions ----------------------------------------------------------------------------
    def allow(self) -> bool:
        if self.cfg.failures <= 0:
            return True
        st = self.state()
        if st.state == CLOSED:
            return True
        allowed, _ = decide(st, self.clock(), self.cfg)
        if not allowed:
            return False
        return self._apply(lambda s: decide(s, self.clock(), self.cfg))

    def record(self, ok: bool) -> None:
        if self.cfg.failures <= 0:
            return
        if ok:
            st = self.state()
            if st.state == CLOSED and st.failures == 0:
                return  # nothing to reset (as this process saw it within cache_seconds)
            self._apply(lambda s: (True, after_success(s)))
        else:
            self._apply(lambda s: (True, after_failure(s, self.clock(), self.cfg)))

    def _apply(self, step: Callable[[BreakerState], tuple[bool, BreakerState]]) -> bool:
        """Run ``step`` on the stored state in a WATCH/MULTI transaction; returns its verdict."""
        result: dict[str, Any] = {}

        def txn(pipe: Any) -> None:
            old = BreakerState.from_hash(pipe.hgetall(self.key))
            verdict, new = step(old)
            result.update(old=old, new=new, verdict=verdict)
            if new != old:
                pipe.multi()
                pipe.hset(self.key, mapping=new.to_hash())
                pipe.expire(self.key, KEY_TTL_SECONDS)

        self.r.transaction(txn, self.key)
        old, new = result["old"], result["new"]
        self._seen, self._seen_at = new, time.monotonic()
        if old.state != new.state and self.on_transition is not None:
            self.on_transition(self.target, old.state, new.state)
        return bool(result["verdict"])

    def reset(self) -> None:
        self.r.delete(self.key)
        self._seen, self._seen_at = BreakerState(), float("-inf")
