"""Flower's Celery app (charts/humanizer/files/humanizer_flower.py) reaches the broker as the workers do.

The file runs in the upstream Flower image, which has no Humanizer, so it repeats the broker part of
``humanizer.broker.celery_config``; here both read the same variables and must agree: URL, transport options
(``master_name``, ``sentinel_kwargs``, ``global_keyprefix``, ``visibility_timeout`` ...) and TLS options. The
only difference on purpose: a direct TLS connection is ``rediss://`` for Flower (its broker page picks its Redis
client by the scheme), ``redis://`` plus ``broker_use_ssl`` for the workers.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from celery import current_app

from humanizer.broker import celery_config
from humanizer.config import Settings

pytestmark = pytest.mark.unit

MODULE = Path(__file__).resolve().parents[2] / "charts" / "humanizer" / "files" / "humanizer_flower.py"
PASSWORD = "p@ss/w:rd#%?&= x"


@pytest.fixture(scope="module")
def flower() -> ModuleType:
    """The module as Flower imports it (with an environment of no Redis settings); Celery's current app kept."""
    previous = current_app._get_current_object()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("REDIS_", "HUMANIZER_", "CELERY_"))}
    try:
        spec = importlib.util.spec_from_file_location("humanizer_flower", MODULE)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        os.environ.update(saved)
        previous.set_current()
    assert module.app.conf.broker_url == "redis://127.0.0.1:6379/0"  # nothing set: the settings' defaults
    return module


ENVS: dict[str, dict[str, str]] = {
    "bundled": {"REDIS_HOST": "hz-humanizer-redis", "REDIS_PORT": "6379", "REDIS_PASSWORD": PASSWORD,
                "HUMANIZER_KEY_PREFIX": "hz"},
    "url": {"REDIS_URL": "redis://:pw%40x@redis.example:6380/2", "REDIS_USERNAME": "app",
            "HUMANIZER_KEY_PREFIX": "blue", "CELERY_VISIBILITY_TIMEOUT": "7200"},
    "url-user-and-password": {"REDIS_URL": "redis://u%3Ax:p%2Fw@[fe80::1]:6379", "REDIS_USERNAME": "ignored"},
    "url-no-password": {"REDIS_URL": "redis://redis.example/5", "REDIS_PASSWORD": PASSWORD},
    "rediss-url": {"REDIS_URL": "rediss://app:pw@redis.example:6380/0", "REDIS_TLS_CA_FILE": "/ca/ca.crt"},
    "url-and-tls": {"REDIS_URL": "redis://:pw@redis.example:6380/1", "REDIS_TLS": "true", "REDIS_USERNAME": "app",
                    "REDIS_TLS_CA_FILE": "/ca/bundle.pem", "REDIS_TLS_CERT_FILE": "/c/tls.crt",
                    "REDIS_TLS_KEY_FILE": "/c/tls.key", "REDIS_TLS_CHECK_HOSTNAME": "false",
                    "HUMANIZER_KEY_PREFIX": "green"},
    "sentinel": {"REDIS_SENTINELS": "s0.redis:26379, s1.redis:26380,[fd00::2]", "REDIS_SENTINEL_MASTER": "prod",
                 "REDIS_DB": "2", "REDIS_PASSWORD": PASSWORD},
    "sentinel-tls": {"REDIS_SENTINELS": "s0:26379,s1:26379", "REDIS_SENTINEL_MASTER": "prod", "REDIS_DB": "3",
                     "REDIS_USERNAME": "humanizer", "REDIS_PASSWORD": PASSWORD, "REDIS_SENTINEL_PASSWORD": "s@/p",
                     "REDIS_SENTINEL_USERNAME": "sentinel-user", "REDIS_TLS": "true",
                     "REDIS_TLS_CA_FILE": "/etc/humanizer/redis-tls/ca/ca.crt",
                     "REDIS_TLS_CERT_FILE": "/etc/humanizer/redis-tls/client/tls.crt",
                     "REDIS_TLS_KEY_FILE": "/etc/humanizer/redis-tls/client/tls.key",
                     "HUMANIZER_KEY_PREFIX": "blue", "CELERY_VISIBILITY_TIMEOUT": "5000"},
    "sentinel-no-passwords": {"REDIS_SENTINELS": "127.0.0.1:26379"},
}


@pytest.mark.parametrize("name", list(ENVS))
def test_flower_reaches_the_broker_as_the_workers(flower: ModuleType, name: str) -> None:
    env = ENVS[name]
    settings = Settings.model_validate(env)
    workers = celery_config(settings)
    got: dict[str, Any] = flower.config(env)
    assert got["broker_transport_options"] == workers["broker_transport_options"]
    assert got["broker_use_ssl"] == workers["broker_use_ssl"]
    expected_url = str(workers["broker_url"])
    if settings.redis_tls_enabled and not settings.sentinel_mode:
        expected_url = "rediss" + expected_url.removeprefix("redis")
    assert got["broker_url"] == expected_url


def test_what_flower_gets_in_each_mode(flower: ModuleType) -> None:
    """Spelled out, so that an agreeing mistake in both (say, no master_name) still fails here."""
    bundled = flower.config(ENVS["bundled"])
    assert bundled["broker_url"] == "redis://:p%40ss%2Fw%3Ard%23%25%3F%26%3D%20x@hz-humanizer-redis:6379/0"
    assert "global_keyprefix" not in bundled["broker_transport_options"] and bundled["broker_use_ssl"] is False
    sentinel = flower.config(ENVS["sentinel-tls"])
    auth = "humanizer:p%40ss%2Fw%3Ard%23%25%3F%26%3D%20x@"
    assert sentinel["broker_url"] == f"sentinel://{auth}s0:26379/3;sentinel://{auth}s1:26379/3"
    options = sentinel["broker_transport_options"]
    assert options["master_name"] == "prod" and options["global_keyprefix"] == "blue:"
    assert options["visibility_timeout"] == 5000
    assert options["sentinel_kwargs"]["password"] == "s@/p" and options["sentinel_kwargs"]["ssl"] is True
    assert options["sentinel_kwargs"]["ssl_ca_certs"] == "/etc/humanizer/redis-tls/ca/ca.crt"
    assert sentinel["broker_use_ssl"]["ssl_certfile"] == "/etc/humanizer/redis-tls/client/tls.crt"
    tls = flower.config(ENVS["url-and-tls"])
    assert tls["broker_url"] == "rediss://app:pw@redis.example:6380/1"
    assert tls["broker_use_ssl"]["ssl_ca_certs"] == "/ca/bundle.pem"
    assert tls["broker_use_ssl"]["ssl_check_hostname"] is False


@pytest.mark.parametrize(("env", "message"), [
    ({"REDIS_SENTINELS": "s0:notaport"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "s0", "REDIS_URL": "redis://r:6379/0"}, "exclude each other"),
    ({"REDIS_TLS": "maybe"}, "REDIS_TLS"),
])
def test_bad_settings_stop_flower(flower: ModuleType, env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        flower.config(env)
