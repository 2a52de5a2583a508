"""compose.yaml runs the same image as the chart: Redis with AOF + noeviction, the API, workers, Flower."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from humanizer.api.settings import ApiSettings
from humanizer.config import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
OURS = ("api", "worker")


def setting_names() -> set[str]:
    names = {c for f in Settings.model_fields.values() for c in getattr(f.validation_alias, "choices", [])
             if isinstance(c, str) and c.isupper()}
    return names | {f"HUMANIZER_API_{n.upper()}" for n in ApiSettings.model_fields} | {"MONITORING_PROMETHEUS_PORT"}


def default_of(value: object) -> str:
    """``${VAR:-default}`` -> ``default`` (what the service gets when VAR is unset)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def test_services() -> None:
    assert set(SERVICES) == {"redis", "api", "worker", "flower"}
    assert SERVICES["flower"]["profiles"] == ["flower"]
    assert not any("profiles" in SERVICES[s] for s in ("redis", "api", "worker"))


def test_redis_is_durable_and_never_evicts() -> None:
    redis = SERVICES["redis"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+", redis["image"])
    cmd = [default_of(a) for a in redis["command"]]
    assert cmd[0] == "redis-server"
    flags = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--requirepass"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-data" in COMPOSE["volumes"]
    assert redis["healthcheck"]["test"]


def test_api_and_worker_run_the_one_image() -> None:
    for name in OURS:
        svc = SERVICES[name]
        assert svc["image"] == "humanizer:dev"
        assert svc["build"]["context"] == "."
        assert svc["user"] == "10001:10001"
        assert svc["read_only"] is True and "/tmp" in svc["tmpfs"]
        assert svc["cap_drop"] == ["ALL"]
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert SERVICES["api"]["command"] == ["api"]
    assert SERVICES["worker"]["command"][0] == "worker"
    queues = next(a for a in SERVICES["worker"]["command"] if a.startswith("--queues="))
    assert queues == "--queues=humanize,control"


def test_env_names_are_settings() -> None:
    known = setting_names()
    for name in OURS:
        env = SERVICES[name]["environment"]
        assert set(env) <= known, f"{name}: {set(env) - known}"
        assert env["REDIS_HOST"] == "redis"
        assert default_of(env["REDIS_PASSWORD"]) == default_of(SERVICES["redis"]["command"][-1])
    # The defaults validate as settings (e.g. visibility timeout vs time limit).
    Settings.model_validate({k: default_of(v) for k, v in SERVICES["worker"]["environment"].items()})
    assert default_of(SERVICES["api"]["environment"]["HUMANIZER_API_HOST"]) == "0.0.0.0"


def test_worker_grace_covers_the_task_time_limit() -> None:
    grace = int(SERVICES["worker"]["stop_grace_period"].rstrip("s"))
    limit = float(default_of(SERVICES["worker"]["environment"]["CELERY_TASK_TIME_LIMIT"]))
    assert grace >= limit + 30


def test_flower_uses_basic_auth_and_our_redis() -> None:
    flower = SERVICES["flower"]
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    broker = next(a for a in flower["command"] if a.startswith("--broker="))
    assert "@redis:6379" in broker
    assert not flower["image"].endswith(":latest") and ":" in flower["image"]
