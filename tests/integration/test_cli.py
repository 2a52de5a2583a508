"""The CLI as a user runs it: real subprocesses, real Redis, real workers, the real HTTP API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from humanizer.api.testing import start_api_process
from humanizer.local.redis_server import free_port
from humanizer.local.stack import LocalStack

pytestmark = pytest.mark.integration

DOC = "It is important to note that the team utilizes robust tools. Furthermore, 42 people use them.\n"


def humanizer(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "humanizer.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0, f"exit 0 for bad input: {proc.stdout[-300:]}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), f"not a one-line error: {proc.stderr[-500:]!r}"
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such file"),
        (b"", "empty"),
        (b"   \n\n  ", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "NUL bytes"),
        (b"caf\xe9 latin-1 text", "not valid UTF-8"),
        (b"x" * 2048, "the limit is 1,000"),
    ],
)
def test_run_rejects_bad_files(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "doc.txt"
    if content is not None:
        path.write_bytes(content)
    one_line_error(humanizer("run", str(path), env={"HUMANIZER_MAX_DOCUMENT_BYTES": "1000"}), needle)


def test_run_rejects_unknown_style_and_provider(tmp_path: Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text(DOC)
    one_line_error(humanizer("run", str(path), "--style", "pirate"), "unknown style 'pirate'")
    one_line_error(humanizer("run", str(path), "--provider", "nope"), "unknown provider 'nope'")


def test_run_says_when_redis_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text(DOC)
    proc = humanizer("run", str(path), env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(free_port())})
    one_line_error(proc, "Redis is unreachable at redis://127.0.0.1:")


def test_run_local_end_to_end(tmp_path: Path) -> None:
    path, out = tmp_path / "doc.md", tmp_path / "out.md"
    path.write_text(DOC * 20)
    proc = humanizer("run", str(path), "--local", "1", "--style", "casual", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SUCCESS" in proc.stderr and out.exists()
    assert "utilizes" not in out.read_text() and "42" in out.read_text()


def test_status_cancel_and_submit_through_the_api(stack: LocalStack, fake_llm: Any, tmp_path: Path) -> None:
    path, out = tmp_path / "doc.md", tmp_path / "out.md"
    path.write_text(DOC * 10)
    env = {**stack.env, "HUMANIZER_API_TOKENS": "t0ken-cli"}
    with start_api_process(env=env) as api:
        proc = humanizer("submit", str(path), "--api", api.url, "--token", "t0ken-cli", "--out", str(out), env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "SUCCESS" in proc.stderr and "42" in out.read_text()
        bad = humanizer("submit", str(path), "--api", api.url, "--token", "wrong", env=env)
        one_line_error(bad, "401")
    job_id = proc.stderr.split("job ", 1)[1].split(":", 1)[0].strip()
    status = humanizer("status", job_id, env=stack.env)
    assert status.returncode == 0 and status.stdout.startswith("SUCCESS"), status.stdout
    cancelled = humanizer("cancel", job_id, env=stack.env)
    assert "had already ended" in cancelled.stdout
    one_line_error(humanizer("status", "no-such-job", env=stack.env), "no job no-such-job")
    # the command the operator's OutputTooLarge/OutputRejected events name
    result = humanizer("result", job_id, env=stack.env)
    assert result.returncode == 0 and result.stdout == out.read_text(), result.stderr[-500:]
    one_line_error(humanizer("result", "no-such-job", env=stack.env), "no job no-such-job")
