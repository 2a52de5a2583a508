"""Readiness: Redis answers and a provider is configured; how many workers answer a ping is reported too.

The API is ready when it can accept jobs. Workers are not required: with none running (scaled to zero,
or all restarting) a job is accepted and waits in the queue, which is what the operator scales up from.
An API that went unready with its workers would take itself out of its Service exactly when a job is
needed to wake them."""

from __future__ import annotations

import threading
import time

import redis

from humanizer.api.schemas import Readiness, ReadinessCheck
from humanizer.config import Settings
from humanizer.monitoring.service import MonitoringService


class ReadinessProbe:
    def __init__(self, settings: Settings, cache_seconds: float = 5.0, ping_timeout: float = 1.0) -> None:
        self.settings = settings
        self.cache_seconds = cache_seconds
        self.monitor = MonitoringService(settings, control_timeout=ping_timeout)
        self._lock = threading.Lock()
        self._workers: tuple[float, ReadinessCheck] | None = None

    def _redis(self) -> ReadinessCheck:
        try:
            self.monitor.redis.ping()
        except redis.RedisError as exc:
            return ReadinessCheck(ok=False, message=f"Redis unreachable at {self.settings.redis_dsn_redacted} "
                                                    f"({type(exc).__name__})")
        return ReadinessCheck(ok=True, message="Redis answers")

    def _workers_check(self) -> ReadinessCheck:
        with self._lock:  # one ping at a time; callers within the cache window share its answer
            if self._workers and time.monotonic() < self._workers[0]:
                return self._workers[1]
            try:
                names = self.monitor.ping_workers(attempts=1)  # informational: one window, not two
                check = ReadinessCheck(
                    ok=bool(names), required=False,
                    message=f"{len(names)} worker(s) answered a ping" if names
                    else "no worker answered a ping: jobs are accepted and wait in the queue until one starts",
                )
            except Exception as exc:
                check = ReadinessCheck(ok=False, required=False, message=f"cannot ping workers ({type(exc).__name__})")
            self._workers = (time.monotonic() + self.cache_seconds, check)
            return check

    def _provider(self) -> ReadinessCheck:
        s = self.settings
        if s.provider == "openai" and s.openai_api_key is None and not s.openai_base_url:
            return ReadinessCheck(ok=False, message="provider 'openai' needs OPENAI_API_KEY or OPENAI_BASE_URL")
        return ReadinessCheck(ok=True, message=f"provider '{s.provider}' configured")

    def check(self) -> Readiness:
        checks = {"redis": self._redis()}
        checks["workers"] = self._workers_check() if checks["redis"].ok else ReadinessCheck(
            ok=False, required=False, message="skipped: Redis unreachable")
        checks["provider"] = self._provider()
        ready = all(c.ok for c in checks.values() if c.required)
        return Readiness(status="ready" if ready else "not-ready", checks=checks)
