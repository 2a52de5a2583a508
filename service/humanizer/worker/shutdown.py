"""A warm shutdown that cannot finish does not wait for the kill: leave once Redis is gone.

On SIGTERM Celery stops taking tasks and waits for the running ones (the chart gives it the task time
limit + 30 s). That wait is only worth something while Redis answers: a finished chunk is stored and
acknowledged there. With Redis gone -- ``helm uninstall`` and namespace deletion remove it together
with the workers -- nothing can be stored or acknowledged, and the worker lingered until the kubelet's
SIGKILL (found on the node tier: a namespace deletion waited out the 330 s grace). Whatever was in
flight stays unacknowledged in Redis' AOF and is redelivered when Redis is back.

``install`` starts, at the beginning of a shutdown, a watchdog thread that PINGs Redis every second
and ends the process when Redis has been unreachable for
``HUMANIZER_WORKER_SHUTDOWN_REDIS_GONE_SECONDS`` (default 15).
"""

from __future__ import annotations

import os
import threading
import time

import redis
import structlog

from humanizer.config import Settings
from humanizer.redis_client import connect

ENV = "HUMANIZER_WORKER_SHUTDOWN_REDIS_GONE_SECONDS"
DEFAULT_SECONDS = 15.0

log = structlog.get_logger("humanizer.worker.shutdown")


def gone_after() -> float:
    try:
        value = float(os.environ.get(ENV, "") or DEFAULT_SECONDS)
    except ValueError:
        value = DEFAULT_SECONDS
    return value if value > 0 else DEFAULT_SECONDS


def watch(settings: Settings, seconds: float, interval: float = 1.0) -> None:
    """Return once the configured Redis stayed unreachable for ``seconds`` (never while it answers)."""
    client = connect(settings, socket_connect_timeout=1, socket_timeout=1)
    down_since: float | None = None
    while True:
        try:
            client.ping()
            down_since = None
        except redis.RedisError:
            now = time.monotonic()
            down_since = down_since if down_since is not None else now
            if now - down_since >= seconds:
                return
        time.sleep(interval)


def install(settings: Settings) -> None:
    """Connect the watchdog to Celery's shutdown (warm or cold)."""
    from celery.signals import worker_shutting_down

    def leave_when_redis_is_gone() -> None:
        seconds = gone_after()
        watch(settings, seconds)
        log.warning("worker.shutdown.redis_gone", seconds=seconds)
        os._exit(0)  # nothing left to finish: Redis holds the unacknowledged tasks

    def start(**_: object) -> None:
        threading.Thread(target=leave_when_redis_is_gone, name="humanizer-shutdown-watchdog", daemon=True).start()

    worker_shutting_down.connect(start, weak=False)
