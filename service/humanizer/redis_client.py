"""One Redis connection pool per process and URL."""

from __future__ import annotations

import functools

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from humanizer.config import Settings, get_settings


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached; the message names the (redacted) URL, never the password."""


@functools.cache
def _client(dsn: str) -> redis.Redis:
    return redis.Redis.from_url(
        dsn,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
        # ride out a Redis restart or failover of a few seconds instead of failing the caller
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=6),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def get_redis(settings: Settings | None = None) -> redis.Redis:
    return _client((settings or get_settings()).redis_dsn)


def check_redis(settings: Settings | None = None) -> redis.Redis:
    """Return a client after a PING, or raise :class:`RedisUnavailable` with a one-line reason."""
    settings = settings or get_settings()
    client = get_redis(settings)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise RedisUnavailable(f"Redis at {settings.redis_dsn_redacted} rejected the password") from exc
    except redis.RedisError as exc:
        raise RedisUnavailable(
            f"Redis is unreachable at {settings.redis_dsn_redacted} ({type(exc).__name__}); "
            "start it or set REDIS_HOST/REDIS_PORT (or REDIS_URL)"
        ) from exc
    return client
