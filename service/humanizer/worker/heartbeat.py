"""The worker's heartbeat file and the probe that checks its age (the chart's worker probes).

With ``HUMANIZER_WORKER_HEARTBEAT_FILE`` set (the chart sets ``/tmp/humanizer-worker.heartbeat``), a Celery
consumer bootstep touches that file every ``HUMANIZER_WORKER_HEARTBEAT_SECONDS`` (default 10) from the
consumer's timer, which the consumer's event loop runs: the loop that takes messages from Redis. Tasks run
on pool threads (or child processes), so a long chunk does not delay it; a loop that hangs, or a consumer
that lost Redis and is reconnecting (its timer entry is cancelled until the connection is back), stops
refreshing the file. With the ``solo`` pool a task runs on that loop itself, so the allowed age must exceed
the task time limit (the chart does that).

The probe, ``python -m humanizer.worker.heartbeat FILE MAX_AGE_SECONDS``, exits 0 when FILE was touched
within MAX_AGE_SECONDS and 1 otherwise (a missing file included), printing one line. It imports only the
standard library: a kubelet exec costs one short Python start-up, not a broker round trip and a reply from
every worker like ``celery inspect ping``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from celery import Celery

FILE_ENV = "HUMANIZER_WORKER_HEARTBEAT_FILE"
INTERVAL_ENV = "HUMANIZER_WORKER_HEARTBEAT_SECONDS"
DEFAULT_INTERVAL = 10.0

log = logging.getLogger("humanizer.worker.heartbeat")


def touch(path: str | Path) -> None:
    """Create the file or move its modification time to now; a failure is logged, never raised."""
    try:
        Path(path).touch()
    except OSError as exc:
        log.warning("cannot touch the heartbeat file %s: %s", path, exc)


def age(path: str | Path, now: float | None = None) -> float | None:
    """Seconds since the file was last touched; None when it does not exist."""
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    return max(0.0, (time.time() if now is None else now) - mtime)


def is_fresh(path: str | Path, max_age: float, now: float | None = None) -> bool:
    """True when the file exists and was touched at most ``max_age`` seconds ago."""
    seconds = age(path, now)
    return seconds is not None and seconds <= max_age


def check(path: str | Path, max_age: float, now: float | None = None) -> tuple[bool, str]:
    """The probe's verdict and its one-line explanation."""
    seconds = age(path, now)
    if seconds is None:
        return False, f"no heartbeat: {path} does not exist (the worker has not consumed from Redis yet)"
    if seconds > max_age:
        return False, f"stale heartbeat: {path} last touched {seconds:.0f}s ago (allowed {max_age:g}s)"
    return True, f"heartbeat {seconds:.0f}s old"


def interval_from_env() -> float:
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        value = DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


def install(app: Celery, path: str | None = None, interval: float | None = None) -> bool:
    """Add the heartbeat bootstep to ``app``'s consumer; a no-op (False) without a file to touch."""
    file = os.environ.get(FILE_ENV, "") if path is None else path
    if not file:
        return False
    every = interval_from_env() if interval is None else interval
    from celery import bootsteps

    class Heartbeat(bootsteps.StartStopStep):
        """Touches the heartbeat file from the consumer's timer while the consumer runs."""

        requires: ClassVar[tuple[str, ...]] = ("celery.worker.consumer.tasks:Tasks",)  # once it takes tasks

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.tref: Any = None

        def start(self, parent: Any) -> None:
            touch(file)
            self.tref = parent.timer.call_repeatedly(every, touch, (file,), priority=10)

        def stop(self, parent: Any) -> None:  # connection lost (restart) or shutdown
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

    if not any(getattr(s, "__name__", "") == "Heartbeat" for s in app.steps["consumer"]):
        app.steps["consumer"].add(Heartbeat)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m humanizer.worker.heartbeat FILE MAX_AGE_SECONDS", file=sys.stderr)
        return 2
    try:
        max_age = float(args[1])
    except ValueError:
        print(f"MAX_AGE_SECONDS must be a number, not {args[1]!r}", file=sys.stderr)
        return 2
    ok, message = check(args[0], max_age)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
