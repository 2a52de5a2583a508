"""Start the fake server in a subprocess for tests and benchmarks.

    with start_fake_llm_process(latency=0.05, faults=[{"kind": "429", "first_n": 3}]) as fake:
        client = openai.OpenAI(base_url=fake.url, api_key="x")
        ...
        fake.stats()["by_status"]
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from humanizer.fake_llm.config import FakeLLMConfig

READY_PREFIX = "FAKE_LLM_URL="


class FakeLLMProcess:
    """A running fake server. ``url`` is the OpenAI base URL (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, proc: subprocess.Popen[str], url: str, stderr_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.base_url = url
        self.root = url.removesuffix("/v1")
        self.port = int(self.root.rsplit(":", 1)[1])
        self.stderr_path = stderr_path

    # -- admin API ----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.root + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise RuntimeError(f"fake LLM admin {method} {path} failed: HTTP {exc.code} {detail}") from None

    def stats(self) -> dict[str, Any]:
        """``{"total", "by_status", "by_fault", "in_flight", "max_in_flight", "uptime", "requests": [...]}``."""
        result: dict[str, Any] = self._call("GET", "/_admin/stats")
        return result

    def config(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_admin/config")
        return result

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change some settings, keep the rest (fault counters restart)."""
        result: dict[str, Any] = self._call("PATCH", "/_admin/config", changes)
        return result

    def replace_config(self, **config: Any) -> dict[str, Any]:
        """Replace the whole config (unset fields take their defaults)."""
        result: dict[str, Any] = self._call("POST", "/_admin/config", config)
        return result

    def reset(self, keep_config: bool = False) -> None:
        """Clear statistics and counters; restore the start-up config unless ``keep_config``."""
        self._call("POST", "/_admin/reset", {"keep_config": keep_config})

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def __enter__(self) -> FakeLLMProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FakeLLMProcess(url={self.url!r}, pid={self.proc.pid})"


def _drain(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def start_fake_llm_process(
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 20.0,
    **config: Any,
) -> FakeLLMProcess:
    """Start ``python -m humanizer.fake_llm`` on a free loopback port and wait until it listens.

    ``config`` takes the ``FakeLLMConfig`` fields (latency, jitter, api_key, rpm, mode, pad_tokens,
    model, seed, faults=[{...}], log_limit). Use the result as a context manager to stop it.
    """
    cfg = FakeLLMConfig.model_validate(config)  # fail here, in the caller, on a bad config
    env = dict(os.environ)
    service_dir = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (service_dir, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    fd, name = tempfile.mkstemp(prefix="fake-llm-", suffix=".stderr")
    stderr_path = Path(name)
    with os.fdopen(fd, "w") as stderr_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "humanizer.fake_llm", "--host", host, "--port", str(port),
             "--config-json", cfg.model_dump_json()],
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_drain, args=(proc.stdout, lines), daemon=True, name="fake-llm-stdout").start()
    deadline = time.monotonic() + startup_timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            break
        try:
            line = lines.get(timeout=min(0.1, remaining))
        except queue.Empty:
            continue
        if line.startswith(READY_PREFIX):
            return FakeLLMProcess(proc, line[len(READY_PREFIX) :].strip(), stderr_path)
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    tail = stderr_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"fake LLM server did not start within {startup_timeout}s (exit {proc.returncode}): {tail}")
