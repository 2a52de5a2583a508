"""The local stack's readiness wait (demo, tests, benchmarks) survives broker connections that break while
it polls: CI once failed a stack start on "Connection closed by server" from a ping."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from humanizer.local.stack import LocalStack

pytestmark = pytest.mark.integration


def test_wait_ready_survives_connections_killed_while_it_polls(make_stack: Any) -> None:
    stack: LocalStack = make_stack(workers=0)
    assert stack.pool is not None
    admin = redis.Redis(host="127.0.0.1", port=stack.redis.port)
    kills: list[tuple[float, int]] = []
    stop = threading.Event()

    def kill_clients() -> None:
        """Close every other client's connection, as a server would, for the first 3 s of the wait."""
        end = time.monotonic() + 3.0
        while time.monotonic() < end and not stop.is_set():
            killed = int(admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
            kills.append((time.monotonic(), killed))
            time.sleep(0.02)

    stack.pool.add()
    killer = threading.Thread(target=kill_clients, daemon=True)
    started = time.monotonic()
    killer.start()
    try:
        stack.pool.wait_ready(timeout=60)
    finally:
        stop.set()
        killer.join(10)
    ready = time.monotonic()
    # The fault hit while the wait was polling: connections were closed between its start and its end.
    hits = [at for at, killed in kills if killed and started <= at <= ready]
    assert hits, f"no connection was killed during the wait: {kills[:5]}"
    assert ready > max(hits), "the wait returned while connections were still being killed"
    print(f"\nFIGURE stack readiness: {sum(k for _, k in kills)} connections killed during the wait, "
          f"ready {ready - started:.1f}s after it began")
    admin.close()
