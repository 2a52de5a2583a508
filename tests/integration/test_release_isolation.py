"""Two releases on ONE Redis database (issue 15, item 6): each release's workers take only its own batches.

Release ``default`` keeps the default key prefix (``hz``: queues ``humanize``/``control``, kombu's keys
unprefixed, as before); release ``blue`` has ``HUMANIZER_KEY_PREFIX=blue`` (queues ``blue.humanize`` and
``blue.control``, every kombu key under ``blue:``). Before the change both releases' workers served the same
``humanize`` list, and a worker that took the other release's batch dropped it as ``job_missing``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from humanizer.broker import configure_app
from humanizer.config import Settings, get_settings, reset_settings_cache
from humanizer.jobs.models import JobStatus
from humanizer.local.redis_server import RedisServer
from humanizer.local.workers import WorkerPool
from humanizer.monitoring.queues import queue_depth
from humanizer.monitoring.service import MonitoringService
from humanizer.orchestration import OrchestrationService
from tests.integration.conftest import markers_in, numbered_document

pytestmark = pytest.mark.integration

RELEASES = {"default": "hz", "blue": "blue"}


@pytest.fixture()
def shared_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(data_dir=tmp_path / "redis", appendonly=False) as server:
        yield server


def release_env(server: RedisServer, prefix: str) -> dict[str, str]:
    return {**server.env(), "HUMANIZER_PROVIDER": "offline", "HUMANIZER_KEY_PREFIX": prefix,
            "HUMANIZER_BATCH_SIZE": "2", "HUMANIZER_CHUNK_CACHE_TTL_SECONDS": "0", "REDIS_URL": ""}


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    """Point this process (the submitting client, Celery's app) at one release."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    settings = get_settings()
    configure_app(settings)
    return settings


def test_two_releases_share_one_redis_database(shared_redis: RedisServer, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    envs = {name: release_env(shared_redis, prefix) for name, prefix in RELEASES.items()}
    pools: dict[str, WorkerPool] = {}
    try:
        # blue's workers run; the default release has none yet
        blue = use(monkeypatch, envs["blue"])
        assert (blue.chunk_queue, blue.control_queue, blue.broker_key_prefix) == ("blue.humanize", "blue.control",
                                                                                  "blue:")
        pools["blue"] = WorkerPool(1, envs["blue"], tmp_path / "logs-blue", concurrency=2).start()
        pools["blue"].wait_ready()

        default = use(monkeypatch, envs["default"])
        assert (default.chunk_queue, default.broker_key_prefix) == ("humanize", "")
        waiting = OrchestrationService().submit_document(numbered_document(6, "DEF"), chunk_max_tokens=40)["job_id"]
        time.sleep(3)  # blue's worker would have taken it by now
        client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
        assert queue_depth(client, "humanize") >= 1, "the default release's batches left its queue"
        assert OrchestrationService().view(waiting).status not in (JobStatus.SUCCESS, JobStatus.FAILURE)
        # a ping from the default release reaches no worker (blue's pidbox channels are blue:-prefixed)
        assert MonitoringService(default, control_timeout=0.5).ping_workers(0.5, attempts=1) == []

        pools["default"] = WorkerPool(1, envs["default"], tmp_path / "logs-default", concurrency=2).start()
        pools["default"].wait_ready()
        jobs: dict[str, list[str]] = {"default": [waiting], "blue": []}
        for name in ("default", "blue", "default", "blue"):
            use(monkeypatch, envs[name])
            jobs[name].append(
                OrchestrationService().submit_document(numbered_document(8, name.upper()[:3]), chunk_max_tokens=40)[
                    "job_id"]
            )
        for name, ids in jobs.items():
            use(monkeypatch, envs[name])
            svc = OrchestrationService()
            for job_id in ids:
                view = svc.wait(job_id, timeout=60, poll=0.1)
                assert view.status == JobStatus.SUCCESS, (name, view.error)
                assert view.humanized_text is not None
                assert len(markers_in(view.humanized_text, name.upper()[:3])) in (6, 8)

        logs = {name: pool.logs() for name, pool in pools.items()}
        for name, ids in jobs.items():
            other = "blue" if name == "default" else "default"
            for job_id in ids:
                assert job_id in logs[name], f"{name}'s job {job_id} not in its workers' log"
                assert job_id not in logs[other], f"{name}'s job {job_id} was taken by {other}'s workers"
        for name, text in logs.items():
            assert "job_missing" not in text, f"{name}'s workers dropped another release's batch"
        # each release's Celery sees only its own worker
        for name in RELEASES:
            settings = use(monkeypatch, envs[name])
            names = MonitoringService(settings, control_timeout=1.0).ping_workers(1.0, attempts=2)
            assert len(names) == 1, (name, names)
        # kombu's keys of blue are all under blue:, none of the default release's are
        keys = set(client.keys("*"))
        assert any(k.startswith("blue:_kombu.binding.blue.") for k in keys), sorted(keys)
        assert not any(k.startswith("blue:") and "binding.humanize" in k for k in keys)
    finally:
        for pool in pools.values():
            pool.stop()
        reset_settings_cache()
