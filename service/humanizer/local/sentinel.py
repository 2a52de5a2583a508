"""A Redis primary, one replica and three Sentinels on 127.0.0.1: the Sentinel set-up of production, locally.

For tests and laptops (no root): every process is ``redis-server`` (``--sentinel`` for the Sentinels),
every wait is bounded. :meth:`SentinelCluster.kill_primary` kills the current primary with SIGKILL, as a
crash would, and :meth:`SentinelCluster.wait_failover` waits until the Sentinels have promoted the
replica. :meth:`SentinelCluster.env` points our processes at the Sentinels (``REDIS_SENTINELS``,
``REDIS_SENTINEL_MASTER``, ``REDIS_PASSWORD``, ``REDIS_SENTINEL_PASSWORD``), which is all a client needs.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from humanizer.local.redis_server import RedisServer, find_redis_server, free_port


class SentinelCluster:
    def __init__(
        self,
        work_dir: str | Path | None = None,
        master_name: str = "mymaster",
        password: str | None = "primary-pw",
        sentinel_password: str | None = "sentinel-pw",
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10_000,
    ) -> None:
        self._tmp = None if work_dir else tempfile.TemporaryDirectory(prefix="hz-sentinel-")
        self.work_dir = Path(work_dir or self._tmp.name)  # type: ignore[union-attr]
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.primary = RedisServer(data_dir=self.work_dir / "redis-a", password=password)
        self.replica = RedisServer(
            data_dir=self.work_dir / "redis-b", password=password, replicaof=("127.0.0.1", self.primary.port)
        )
        self.servers = [self.primary, self.replica]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_procs: list[subprocess.Popen[bytes]] = []

    # LocalStack starts a "redis" whose proc is None
    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.primary.proc

    def env(self) -> dict[str, str]:
        env = {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
            "REDIS_SENTINEL_MASTER": self.master_name,
            "REDIS_DB": "0",
        }
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.sentinel_ports[index], password=self.sentinel_password,
            socket_connect_timeout=1, socket_timeout=2, decode_responses=True,
        )

    def _write_conf(self, index: int) -> Path:
        d = self.work_dir / f"sentinel-{index}"
        d.mkdir(parents=True, exist_ok=True)
        name = self.master_name
        lines = [
            f"port {self.sentinel_ports[index]}",
            "bind 127.0.0.1",
            f"dir {d}",
            f"logfile {d / 'sentinel.log'}",
            "daemonize no",
            f"sentinel monitor {name} 127.0.0.1 {self.primary.port} {min(2, len(self.sentinel_ports))}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {name} {self.password}")
        if self.sentinel_password:
            lines.append(f"requirepass {self.sentinel_password}")
        conf = d / "sentinel.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 30.0) -> SentinelCluster:
        deadline = time.monotonic() + timeout
        try:
            self.primary.start()
            self.replica.start()
            self._wait(lambda: self.replica.client().info("replication").get("master_link_status") == "up",
                       deadline, "the replica never synced with the primary")
            for i in range(len(self.sentinel_ports)):
                conf = self._write_conf(i)
                self.sentinel_procs.append(subprocess.Popen(
                    [find_redis_server(), str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))
            # every Sentinel knows the replica and the other Sentinels: a failover can be agreed on
            for i in range(len(self.sentinel_ports)):
                self._wait(lambda i=i: self._sentinel_ready(i), deadline, f"Sentinel {i} never saw the whole set-up")
        except BaseException:
            self.cleanup()
            raise
        return self

    def _sentinel_ready(self, index: int) -> bool:
        proc = self.sentinel_procs[index]
        if proc.poll() is not None:
            raise RuntimeError(f"sentinel {index} exited with {proc.returncode}; see {self.work_dir}/sentinel-{index}")
        c = self.sentinel_client(index)
        try:
            replicas = c.execute_command("SENTINEL", "REPLICAS", self.master_name)
            others = c.execute_command("SENTINEL", "SENTINELS", self.master_name)
            return len(replicas) >= 1 and len(others) >= len(self.sentinel_ports) - 1
        finally:
            c.close()

    @staticmethod
    def _wait(pred: object, deadline: float, what: str, step: float = 0.1) -> None:
        while True:
            try:
                if pred():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(step)

    def primary_address(self, index: int = 0) -> tuple[str, int]:
        c = self.sentinel_client(index)
        try:
            host, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
            return str(host), int(port)
        finally:
            c.close()

    def current_primary(self) -> RedisServer:
        _, port = self.primary_address()
        return next(s for s in self.servers if s.port == port)

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary (as the Sentinels see it); returns the killed server."""
        victim = self.current_primary()
        victim.kill()
        return victim

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> RedisServer:
        """Until every Sentinel names a new primary that says it is one; returns it."""
        deadline = time.monotonic() + timeout

        def promoted() -> bool:
            ports = {self.primary_address(i)[1] for i in range(len(self.sentinel_ports))}
            if len(ports) != 1 or old_port in ports:
                return False
            server = next(s for s in self.servers if s.port in ports)
            return server.client().info("replication").get("role") == "master"

        self._wait(promoted, deadline, f"no failover within {timeout}s; see {self.work_dir}")
        return self.current_primary()

    def stop(self) -> None:
        for proc in self.sentinel_procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.sentinel_procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.sentinel_procs.clear()
        for server in self.servers:
            server.stop()

    def cleanup(self) -> None:
        self.stop()
        for server in self.servers:
            server.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
