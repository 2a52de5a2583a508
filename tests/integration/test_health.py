"""health_check() against a Redis and a worker of our own, which we stop to see it go degraded/unhealthy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from humanizer.config import Settings
from humanizer.local.redis_server import RedisServer
from humanizer.local.workers import WorkerPool
from humanizer.monitoring import MonitoringService, queue_depth, unacked_count
from humanizer.monitoring.queues import priority_lists
from humanizer.monitoring.throughput import record_chunk_outcome

pytestmark = pytest.mark.integration


def settings_for(server: RedisServer) -> Settings:
    return Settings(redis_url=server.url, provider="offline", key_prefix="hzh")


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=tmp_path / "redis")
    with server:
        yield server


def wait_for_worker(monitor: MonitoringService, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = monitor.ping_workers(0.5, attempts=1)
        if names:
            return names
    raise TimeoutError("the worker never answered a ping")


def test_health_follows_worker_and_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    monitor = MonitoringService(settings_for(redis_server), control_timeout=1.0)
    env = {**redis_server.env(), "HUMANIZER_PROVIDER": "offline", "HUMANIZER_KEY_PREFIX": "hzh", "REDIS_URL": ""}
    pool = WorkerPool(1, env, tmp_path / "logs", concurrency=2).start()
    try:
        wait_for_worker(monitor)
        health = monitor.health_check()
        services = health["services"]
        assert set(services) == {"redis", "celery", "openai", "system"}
        for svc in services.values():
            assert set(svc) == {"status", "message", "response_time_ms", "details"}
        assert services["redis"]["status"] == "healthy", services["redis"]
        assert services["redis"]["details"]["aof_enabled"] is True
        assert services["redis"]["details"]["maxmemory_policy"] == "noeviction"
        assert services["redis"]["details"]["used_memory_bytes"] > 0
        assert services["celery"]["status"] == "healthy", services["celery"]
        assert services["celery"]["details"]["workers_online"] == 1
        assert services["celery"]["details"]["queue_depth"] == {"humanize": 0, "control": 0}
        assert services["openai"]["status"] == "healthy"  # offline provider
        expected = "healthy" if services["system"]["status"] == "healthy" else "degraded"
        assert health["overall_status"] == expected

        record_chunk_outcome(monitor.redis, "hzh", "stored")
        record_chunk_outcome(monitor.redis, "hzh", "dead_lettered")
        snapshot = monitor.get_metrics()["celery_metrics"]
        assert snapshot["active_workers"] == 1 and snapshot["queue_depth"]["humanize"] == 0
        assert snapshot["error_rate"] == 0.5 and snapshot["throughput_per_minute"] > 0
    finally:
        pool.stop()

    # no worker, nothing queued: degraded; no worker and work waiting: unhealthy
    no_worker = monitor.health_check()
    assert no_worker["services"]["celery"]["status"] == "degraded", no_worker["services"]["celery"]
    assert no_worker["overall_status"] == "degraded"
    # key prefix hzh: the queue is hzh.humanize and kombu's keys start with hzh: (global_keyprefix)
    for name in priority_lists("hzh.humanize", key_prefix="hzh:"):
        monitor.redis.lpush(name, '{"fake": "message"}')
    assert queue_depth(monitor.redis, "hzh.humanize", key_prefix="hzh:") == 4
    assert queue_depth(monitor.redis, "humanize") == 0  # a default-prefix release's queue: not ours
    monitor.redis.hset("hzh:unacked", "tag-1", "{}")
    assert unacked_count(monitor.redis, key_prefix="hzh:") == 1
    stuck = monitor.health_check()
    assert stuck["services"]["celery"]["status"] == "unhealthy"
    assert "no worker" in stuck["services"]["celery"]["message"]
    assert stuck["services"]["celery"]["details"]["queue_depth"]["humanize"] == 4
    assert stuck["overall_status"] == "unhealthy"

    # Redis down: unhealthy, and said quickly
    redis_server.stop()
    started = time.monotonic()
    down = monitor.health_check()
    assert time.monotonic() - started < 10
    assert down["overall_status"] == "unhealthy"
    assert down["services"]["redis"]["status"] == "unhealthy"
    assert "unreachable" in down["services"]["redis"]["message"]
    assert down["services"]["celery"]["status"] == "unhealthy"
    assert monitor.get_metrics()["celery_metrics"]["active_workers"] == 0


def test_redis_without_aof_is_degraded(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "noaof", appendonly=False) as server:
        report = MonitoringService(settings_for(server), control_timeout=0.3).check_redis()
    assert report["status"] == "degraded"
    assert "AOF" in report["message"]


def test_openai_provider_probe(fake_llm: object, redis_server: RedisServer) -> None:
    base = {"redis_url": redis_server.url, "provider": "openai", "openai_base_url": fake_llm.url}  # type: ignore[attr-defined]
    good = MonitoringService(Settings(**base, openai_api_key="sk-fake-integration")).check_provider()
    assert good["status"] == "healthy", good
    cached = MonitoringService(Settings(**base, openai_api_key="sk-fake-integration"))
    cached.check_provider()
    assert cached.check_provider()["details"]["cached"] is True
    bad = MonitoringService(Settings(**base, openai_api_key="sk-wrong")).check_provider()
    assert bad["status"] == "unhealthy" and "401" in bad["message"], bad
