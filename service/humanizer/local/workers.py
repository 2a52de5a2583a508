"""Real Celery worker processes on this machine (demo, tests, benchmarks).

Each worker is ``python -m humanizer.cli worker`` in its own process group, so it can be warm-stopped
(SIGTERM), killed (SIGKILL) or restarted like a pod.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType


class WorkerProcess:
    def __init__(self, name: str, env: Mapping[str, str], log_path: Path, extra_args: list[str]) -> None:
        self.name = name
        self.env = dict(env)
        self.log_path = log_path
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", "humanizer.cli", "worker", "--hostname", f"{self.name}@%h", *self.extra_args]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.signal(signal.SIGKILL)
            self.proc.wait(5)


class WorkerPool:
    """N worker processes sharing one environment; logs under ``log_dir``."""

    def __init__(
        self,
        count: int,
        env: Mapping[str, str],
        log_dir: Path,
        concurrency: int = 8,
        pool: str = "threads",
        queues: str | None = None,
    ) -> None:
        self.env = {**os.environ, **env}
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.args = ["--concurrency", str(concurrency), "--pool", pool]
        if queues:
            self.args += ["--queues", queues]
        self.workers: list[WorkerProcess] = []
        self._serial = 0
        for _ in range(count):
            self._new()

    def _new(self) -> WorkerProcess:
        self._serial += 1
        name = f"w{self._serial}"
        worker = WorkerProcess(name, self.env, self.log_dir / f"{name}.log", self.args)
        self.workers.append(worker)
        return worker

    def start(self) -> WorkerPool:
        for w in self.workers:
            if w.proc is None:
                w.start()
        return self

    def add(self) -> WorkerProcess:
        return self._new().start()

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until every live worker answers a Celery ping.

        Each poll pings over a connection of its own: a broker connection that broke during one poll
        (CI once saw "Connection closed by server" from a Redis that had just started) is dropped, and the
        next poll tries again until the deadline, whose error names the last failure.
        """
        from kombu.exceptions import OperationalError
        from redis.exceptions import ConnectionError as RedisConnectionError

        from humanizer.broker import get_app

        app = get_app()

        want = len(self.alive())
        deadline = time.monotonic() + timeout
        failure = ""
        while time.monotonic() < deadline:
            dead = [w for w in self.workers if w.proc is not None and not w.alive]
            if dead:
                raise RuntimeError(f"worker {dead[0].name} exited early; see {dead[0].log_path}")
            try:
                with app.connection_for_write() as conn:
                    replies = app.control.ping(timeout=0.5, connection=conn) or []
            except (OperationalError, RedisConnectionError, OSError) as exc:
                failure = f"; last ping failed: {type(exc).__name__}: {exc}"
                time.sleep(0.2)
                continue
            if len(replies) >= want:
                return
        raise TimeoutError(f"workers not ready after {timeout}s{failure}; logs in {self.log_dir}")

    def stop(self) -> None:
        for w in self.workers:
            w.signal(signal.SIGTERM)
        for w in self.workers:
            w.stop()

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
