"""One-line start-up errors from settings and Redis failures (humanizer.startup)."""

from __future__ import annotations

import pytest
import redis

from humanizer.api.settings import ApiSettings
from humanizer.config import Settings
from humanizer.startup import StartupError, describe_redis_error, load

pytestmark = pytest.mark.unit


def _load(cls: type, monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(StartupError) as info:
        load(lambda: cls(_env_file=None), cls)
    return str(info.value)


def test_names_the_variable_and_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = _load(Settings, monkeypatch, HUMANIZER_RATE_LIMIT_HEADROOM="<nil>")
    assert msg.startswith("HUMANIZER_RATE_LIMIT_HEADROOM: Input should be a valid number")
    assert msg.endswith("(got '<nil>')") and "\n" not in msg


def test_env_prefix_of_a_settings_class_without_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _load(ApiSettings, monkeypatch, HUMANIZER_API_PORT="99999").startswith(
        "HUMANIZER_API_PORT: Input should be less than or equal to 65535 (got '99999')"
    )


def test_several_errors_on_one_line_and_secrets_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = _load(Settings, monkeypatch, REDIS_PORT="x", OPENAI_MAX_TOKENS="0", OPENAI_API_KEY="sk-secret")
    assert "REDIS_PORT:" in msg and "OPENAI_MAX_TOKENS:" in msg and "; " in msg and "\n" not in msg
    assert "sk-secret" not in msg


def test_model_level_check_without_the_input_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = _load(Settings, monkeypatch, CELERY_VISIBILITY_TIMEOUT="10")
    assert msg.startswith("CELERY_VISIBILITY_TIMEOUT must exceed") and "{" not in msg


def test_redis_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://default:hunter2@redis.example:6379/0")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    wrong = redis.AuthenticationError("invalid username-password pair or user is disabled.")
    assert describe_redis_error(wrong, s) == (
        "Redis at redis://default:***@redis.example:6379/0 refused the password (AUTH failed)", False
    )
    msg, transient = describe_redis_error(redis.ConnectionError("Error 111 connecting"), s)
    assert msg.startswith("Redis is unreachable at redis://default:***@redis.example:6379/0") and transient
    monkeypatch.setenv("REDIS_URL", "rediss://redis.example:6379/0")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    try:
        raise redis.TimeoutError("Timeout connecting to server") from TimeoutError("_ssl.c:989: handshake timed out")
    except redis.TimeoutError as exc:
        msg, transient = describe_redis_error(exc, s)
    assert msg.startswith("TLS handshake with Redis at rediss://redis.example:6379/0 failed") and not transient
