"""The API, the workers and the operator refuse a bad configuration with one line on stderr, no traceback.

Each entrypoint is started as the chart starts it (``humanizer worker``, ``humanizer api``,
``python -m humanizer_operator``) with an environment that is wrong in one way: a setting that does not
parse (as ``<nil>`` rendered by ``helm upgrade --reuse-values`` did), a wrong or missing Redis password,
Redis unreachable, ``rediss://`` to a plain Redis. A real Redis with a password answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from humanizer.local.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pa55word"
ENTRYPOINTS = {
    "worker": [sys.executable, "-m", "humanizer.cli", "worker", "--pool=solo"],
    "api": [sys.executable, "-m", "humanizer.cli", "api", "--port", "0"],
    "operator": [sys.executable, "-m", "humanizer_operator", "--standalone", "--namespace=startup-test"],
}


@pytest.fixture(scope="module")
def redis_with_password() -> Iterator[RedisServer]:
    with RedisServer(password=PASSWORD, appendonly=False) as server:
        yield server


@pytest.fixture(scope="module")
def plain_redis() -> Iterator[RedisServer]:
    with RedisServer(appendonly=False) as server:
        yield server


def start(entrypoint: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "HUMANIZER_", "CELERY_"))}
    full = {**base, "HUMANIZER_API_TOKENS": "t0ken", "HUMANIZER_REDIS_STARTUP_TIMEOUT_SECONDS": "1", **env}
    return subprocess.run(ENTRYPOINTS[entrypoint], capture_output=True, text=True, timeout=timeout, env=full, cwd=cwd)


def assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-1000:]}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"not one line: {proc.stderr[-1500:]!r}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert PASSWORD not in proc.stderr + proc.stdout
    return lines[0]


@pytest.mark.parametrize("entrypoint", list(ENTRYPOINTS))
def test_invalid_setting_names_the_variable_and_value(entrypoint: str, plain_redis: RedisServer,
                                                      tmp_path: Path) -> None:
    proc = start(entrypoint, {**plain_redis.env(), "HUMANIZER_RATE_LIMIT_HEADROOM": "<nil>"}, tmp_path)
    assert_one_line(proc, "HUMANIZER_RATE_LIMIT_HEADROOM: Input should be a valid number", "(got '<nil>')")


@pytest.mark.parametrize("entrypoint", list(ENTRYPOINTS))
def test_inconsistent_settings(entrypoint: str, plain_redis: RedisServer, tmp_path: Path) -> None:
    proc = start(entrypoint, {**plain_redis.env(), "CELERY_VISIBILITY_TIMEOUT": "10"}, tmp_path)
    assert_one_line(proc, "CELERY_VISIBILITY_TIMEOUT must exceed")


def test_api_and_operator_settings_of_their_own(plain_redis: RedisServer, tmp_path: Path) -> None:
    assert_one_line(start("api", {**plain_redis.env(), "HUMANIZER_API_PORT": "eighty"}, tmp_path),
                    "HUMANIZER_API_PORT: Input should be a valid integer", "(got 'eighty')")
    assert_one_line(start("api", {**plain_redis.env(), "HUMANIZER_API_TOKENS": ""}, tmp_path),
                    "no API tokens configured")
    assert_one_line(start("operator", {**plain_redis.env(), "HUMANIZER_AUTOSCALE_MIN_REPLICAS": "<nil>"}, tmp_path),
                    "HUMANIZER_AUTOSCALE_MIN_REPLICAS: Input should be a valid integer", "(got '<nil>')")


@pytest.mark.parametrize("entrypoint", list(ENTRYPOINTS))
def test_wrong_redis_password(entrypoint: str, redis_with_password: RedisServer, tmp_path: Path) -> None:
    env = {**redis_with_password.env(), "REDIS_PASSWORD": "not-" + PASSWORD}
    line = assert_one_line(start(entrypoint, env, tmp_path), "refused the password (AUTH failed)")
    assert f"redis://***@127.0.0.1:{redis_with_password.port}/0" in line
    # the same through REDIS_URL, user name and all
    env = {"REDIS_URL": f"redis://default:wrong-{PASSWORD}@127.0.0.1:{redis_with_password.port}/0"}
    assert_one_line(start(entrypoint, env, tmp_path), "refused the password (AUTH failed)")


@pytest.mark.parametrize("entrypoint", list(ENTRYPOINTS))
def test_missing_redis_password(entrypoint: str, redis_with_password: RedisServer, tmp_path: Path) -> None:
    env = {k: v for k, v in redis_with_password.env().items() if k != "REDIS_PASSWORD"}
    assert_one_line(start(entrypoint, env, tmp_path), "requires a password and none was given")


@pytest.mark.parametrize("entrypoint", list(ENTRYPOINTS))
def test_redis_unreachable(entrypoint: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port), "REDIS_PASSWORD": PASSWORD}
    assert_one_line(start(entrypoint, env, tmp_path), f"Redis is unreachable at redis://***@127.0.0.1:{port}/0")


@pytest.mark.parametrize("entrypoint", list(ENTRYPOINTS))
def test_tls_to_a_plain_redis(entrypoint: str, plain_redis: RedisServer, tmp_path: Path) -> None:
    env = {"REDIS_URL": f"rediss://127.0.0.1:{plain_redis.port}/0"}
    needle = f"TLS handshake with Redis at rediss://127.0.0.1:{plain_redis.port}/0 failed"
    assert_one_line(start(entrypoint, env, tmp_path), needle)


def test_a_redis_that_comes_up_late_is_waited_for(tmp_path: Path) -> None:
    """Not a misconfiguration: a worker started before its Redis waits for it, then runs."""
    import time

    server = RedisServer(appendonly=False)
    env = {**server.env(), "HUMANIZER_REDIS_STARTUP_TIMEOUT_SECONDS": "30"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "HUMANIZER_", "CELERY_"))}
    proc = subprocess.Popen(ENTRYPOINTS["worker"], env={**base, **env}, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        server.start()
        client = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 20
        while len(client.client_list()) < 2:  # the worker's broker connection (besides ours)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the worker never connected to the Redis that came up"
            time.sleep(0.2)
        client.close()
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        server.cleanup()


def test_queues_that_no_release_has(plain_redis: RedisServer, tmp_path: Path) -> None:
    """A worker on a queue nothing is sent to would sit idle, and the autoscaler would not see its work."""
    worker = [*ENTRYPOINTS["worker"], "--queues=control,priority"]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "HUMANIZER_", "CELERY_"))}
    proc = subprocess.run(worker, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**base, **plain_redis.env(), "HUMANIZER_KEY_PREFIX": "blue"})
    assert_one_line(proc, "--queues: unknown queue 'priority'", "blue.humanize, blue.control")
    env = {**plain_redis.env(), "HUMANIZER_KEY_PREFIX": "blue", "HUMANIZER_AUTOSCALE_QUEUES": "humanize,other"}
    assert_one_line(start("operator", env, tmp_path), "HUMANIZER_AUTOSCALE_QUEUES: unknown queue 'other'")
