"""Start-up checks shared by the API, the workers and the operator: one line, never a traceback.

A process that cannot work with its configuration says why in one line on stderr and exits non-zero:
an invalid setting (``HUMANIZER_RATE_LIMIT_HEADROOM=<nil>``), a Redis that refuses the password, a
TLS mismatch (``rediss://`` to a plain Redis), or a Redis that stays unreachable for
``HUMANIZER_REDIS_STARTUP_TIMEOUT_SECONDS`` (default 30; a Redis that starts alongside the pods
is waited for). The Redis URL is always shown redacted (no password).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import redis
from pydantic import ValidationError
from redis.sentinel import MasterNotFoundError

from humanizer.config import Settings
from humanizer.redis_client import connect

T = TypeVar("T")

STARTUP_TIMEOUT_ENV = "HUMANIZER_REDIS_STARTUP_TIMEOUT_SECONDS"
_SECRET_WORDS = ("PASSWORD", "KEY", "TOKEN", "SECRET")


class StartupError(RuntimeError):
    """The process cannot start; ``str()`` is the one-line reason (no secrets)."""


def _env_name(model: type[Any] | None, loc: tuple[Any, ...]) -> str:
    if not loc:
        return ""
    name = str(loc[0])
    if model is None:
        return name
    fields = getattr(model, "model_fields", {})
    field = fields.get(name)
    if field is not None and field.validation_alias is None:
        prefix = str(getattr(model, "model_config", {}).get("env_prefix", "") or "")
        name = f"{prefix}{name}".upper()
    return name + "".join(f"[{part}]" for part in loc[1:])


def describe_validation_error(exc: ValidationError, model: type[Any] | None = None) -> str:
    """``NAME: message (got 'value')`` for each error, joined by ``; `` (values of secrets not shown)."""
    parts = []
    for err in exc.errors(include_url=False):
        name = _env_name(model, tuple(err.get("loc", ())))
        msg = str(err.get("msg", "invalid value"))
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        text = f"{name}: {msg}" if name else msg
        value = err.get("input")
        if name and isinstance(value, str | int | float) and not any(w in name.upper() for w in _SECRET_WORDS):
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            text += f" (got {shown})"
        parts.append(text)
    return "; ".join(parts) or "invalid settings"


def load(factory: Callable[[], T], model: type[Any] | None = None) -> T:
    """Build settings, turning a ValidationError (or a ValueError of a validator) into a StartupError."""
    try:
        return factory()
    except ValidationError as exc:
        raise StartupError(describe_validation_error(exc, model)) from None
    except ValueError as exc:
        raise StartupError(str(exc).splitlines()[0] if str(exc) else "invalid settings") from None


def _chain_text(exc: BaseException) -> str:
    seen: list[str] = []
    cur: BaseException | None = exc
    while cur is not None and len(seen) < 6:
        seen.append(f"{type(cur).__name__}: {cur}")
        cur = cur.__cause__ or cur.__context__
    return " | ".join(seen)


def _is_tls_error(exc: BaseException) -> bool:
    text = _chain_text(exc).lower()
    return any(word in text for word in ("ssl", "handshake", "certificate", "tls"))


def describe_redis_error(exc: BaseException, settings: Settings) -> tuple[str, bool]:
    """A one-line reason for a failed PING, and whether waiting could help (Redis not up yet)."""
    where = settings.redis_dsn_redacted
    tls = settings.redis_tls_enabled
    if isinstance(exc, redis.AuthenticationError):
        code = getattr(exc, "status_code", None) or ""
        if code == "NOAUTH" or "NOAUTH" in str(exc) or "must be called with the client already" in str(exc):
            return f"Redis at {where} requires a password and none was given (set REDIS_PASSWORD or REDIS_URL)", False
        return f"Redis at {where} refused the password (AUTH failed)", False
    if isinstance(exc, redis.ResponseError) and "WRONGPASS" in str(exc).upper():
        return f"Redis at {where} refused the password (AUTH failed)", False
    if tls and _is_tls_error(exc):
        return (f"TLS handshake with Redis at {where} failed ({type(exc).__name__}): is it a plain Redis "
                "(use redis://) or is the CA bundle wrong?"), False
    closed = any(w in str(exc).lower() for w in ("closed by server", "reset by peer"))
    if not tls and isinstance(exc, redis.ConnectionError) and closed:
        return (f"Redis at {where} closed the connection: does it expect TLS "
                "(set REDIS_TLS=true or use rediss://)?"), True
    if isinstance(exc, MasterNotFoundError):
        # redis-py lists each Sentinel's error: none means they answered but know no such primary
        text = str(exc)
        hosts = ",".join(f"{h}:{p}" for h, p in settings.sentinel_hosts)
        if any(w in text for w in ("AuthenticationError", "WRONGPASS", "NOAUTH", "invalid username-password")):
            return (f"the Sentinels at {hosts} refused the password (set REDIS_SENTINEL_PASSWORD to their "
                    "requirepass)"), False
        if " : " in text:
            return f"the Sentinels at {hosts} are unreachable; check REDIS_SENTINELS", True
        return (f"the Sentinels at {hosts} know no reachable primary named {settings.redis_sentinel_master!r} "
                "(check REDIS_SENTINEL_MASTER and that they monitor it)"), True
    if isinstance(exc, redis.ResponseError):
        return f"Redis at {where} answered PING with an error: {str(exc).splitlines()[0][:160]}", False
    if settings.sentinel_mode:
        return f"Redis is unreachable: {where} ({type(exc).__name__}); check REDIS_SENTINELS", True
    return (f"Redis is unreachable at {where} ({type(exc).__name__}); "
            "start it or set REDIS_HOST/REDIS_PORT (or REDIS_URL)"), True


def startup_timeout(default: float = 30.0) -> float:
    raw = os.environ.get(STARTUP_TIMEOUT_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StartupError(f"{STARTUP_TIMEOUT_ENV}: Input should be a valid number (got {raw!r})") from None
    if value < 0:
        raise StartupError(f"{STARTUP_TIMEOUT_ENV}: Input should be greater than or equal to 0 (got {raw!r})")
    return value


def wait_for_redis(settings: Settings, timeout: float | None = None, step: float = 0.5) -> None:
    """PING Redis until it answers; a permanent failure (password, TLS) raises at once, others at the timeout."""
    timeout = startup_timeout() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        client = connect(settings, socket_connect_timeout=5, socket_timeout=5)
        try:
            client.ping()
            return
        except (redis.RedisError, OSError) as exc:
            message, transient = describe_redis_error(exc, settings)
            if not transient or time.monotonic() + step > deadline:
                raise StartupError(message) from None
        finally:
            client.close()
        time.sleep(step)


def exit_with(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` as the one line on stderr and exit."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def load_settings() -> Settings:
    """The process's :class:`Settings` (cached), or a StartupError naming the bad variable."""
    from humanizer.config import get_settings

    return load(get_settings, Settings)
