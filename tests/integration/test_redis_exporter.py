"""The project's Redis exporter (humanizer.monitoring.redis_exporter) against a real Redis server, as a
real process configured the way the chart configures the redis_exporter sidecar."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
import redis

from humanizer.local.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[RedisServer]:
    srv = RedisServer(password="s3cret-pw").start()
    try:
        yield srv
    finally:
        srv.stop()


def start_exporter(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "humanizer.monitoring.redis_exporter"],
        env={**os.environ, **env, "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{port}"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the exporter did not start")


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


def test_exporter_serves_the_dashboards_redis_metrics(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory", str(64 * 2**20))
    client.set("k", "v")
    proc, url = start_exporter({"REDIS_ADDR": f"redis://127.0.0.1:{server.port}", "REDIS_PASSWORD": "s3cret-pw"})
    try:
        m = scrape(url)
        assert m["redis_up"] == 1
        assert m["redis_memory_max_bytes"] == 64 * 2**20
        assert 0 < m["redis_memory_used_bytes"] < 64 * 2**20
        assert m['redis_db_keys{db="db0"}'] == 1
        assert m["redis_connected_clients"] >= 1
    finally:
        proc.kill()
        out = proc.communicate(timeout=5)[0].decode()
    assert "s3cret-pw" not in out  # the password never reaches the log


def test_exporter_reports_down_on_a_wrong_password_and_when_redis_stops(server: RedisServer) -> None:
    proc, url = start_exporter({"REDIS_ADDR": f"127.0.0.1:{server.port}", "REDIS_PASSWORD": "wrong"})
    try:
        assert scrape(url)["redis_up"] == 0
    finally:
        proc.kill()
        proc.wait(5)
    proc, url = start_exporter({"REDIS_ADDR": f"127.0.0.1:{server.port}", "REDIS_PASSWORD": "s3cret-pw"})
    try:
        assert scrape(url)["redis_up"] == 1
        server.kill()
        metrics = scrape(url)
        assert metrics["redis_up"] == 0 and "redis_memory_used_bytes" not in metrics
    finally:
        proc.kill()
        proc.wait(5)
