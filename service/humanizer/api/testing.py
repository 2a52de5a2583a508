"""Run the API in a subprocess on a free loopback port (integration tests, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx2

from humanizer.local.redis_server import free_port


class ApiProcess:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def start_api_process(
    env: Mapping[str, str] | None = None, port: int | None = None, timeout: float = 30.0
) -> Iterator[ApiProcess]:
    """``python -m humanizer.api`` with ``env`` on top of this process' environment; waits for /healthz."""
    port = port or free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="hz-api-"))
    log_path = log_dir / "api.log"
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "humanizer.api", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    api = ApiProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited with {proc.returncode}:\n{api.logs()[-2000:]}")
            try:
                if httpx2.get(f"{api.url}/healthz", timeout=1.0).status_code < 500:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API did not answer within {timeout}s:\n{api.logs()[-2000:]}")
            time.sleep(0.1)
        yield api
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.contextmanager
def serve_in_thread(app: object, port: int | None = None, timeout: float = 15.0) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn in a thread of this process; yields its base URL."""
    import threading

    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,  # type: ignore[arg-type]
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="api-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-process API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
