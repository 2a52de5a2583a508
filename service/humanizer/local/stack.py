"""Redis + real worker processes on this machine, wired together: the demo's and the tests' stack."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from humanizer.broker import configure_app
from humanizer.config import Settings, get_settings, reset_settings_cache
from humanizer.local.redis_server import RedisServer
from humanizer.local.workers import WorkerPool


class LocalStack:
    def __init__(
        self,
        workers: int = 2,
        concurrency: int = 8,
        env: Mapping[str, str] | None = None,
        work_dir: str | Path | None = None,
        redis: RedisServer | None = None,
    ) -> None:
        self._tmp = None if work_dir else tempfile.TemporaryDirectory(prefix="hz-stack-")
        self.work_dir = Path(work_dir or self._tmp.name)  # type: ignore[union-attr]
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.redis = redis or RedisServer(data_dir=self.work_dir / "redis")
        self.extra_env = dict(env or {})
        self.n_workers = workers
        self.concurrency = concurrency
        self.pool: WorkerPool | None = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def env(self) -> dict[str, str]:
        return {**self.redis.env(), **self.extra_env}

    def _apply_env(self) -> Settings:
        """Point this process (the submitting client) at the same Redis and options as the workers."""
        for key, value in self.env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        reset_settings_cache()
        settings = get_settings()
        configure_app(settings)
        return settings

    def start(self) -> LocalStack:
        try:
            if self.redis.proc is None:
                self.redis.start()
            self._apply_env()
            self.pool = WorkerPool(
                self.n_workers, self.env, self.work_dir / "logs", concurrency=self.concurrency
            ).start()
            self.pool.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()
        self.redis.cleanup()
        for key, old in self._saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self._saved_env.clear()
        reset_settings_cache()
        configure_app(get_settings())
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
