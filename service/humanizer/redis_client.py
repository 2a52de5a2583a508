"""Every Redis client the project makes, from the settings: direct or through Sentinel, TLS, ACL user.

- direct: ``REDIS_URL`` or ``REDIS_HOST``/``REDIS_PORT``/``REDIS_DB``/``REDIS_USERNAME``/``REDIS_PASSWORD``;
- Sentinel: ``REDIS_SENTINELS`` (``host:port,...``) and ``REDIS_SENTINEL_MASTER``; the client asks the
  Sentinels for the primary on every (re)connect, so a failover costs a reconnect, not a restart;
- TLS: ``REDIS_TLS`` (or ``rediss://``), ``REDIS_TLS_CA_FILE``, optional client certificate
  ``REDIS_TLS_CERT_FILE``/``REDIS_TLS_KEY_FILE``; with Sentinels the Sentinels are reached with TLS too.

The same settings give Celery's broker and result backend their URL, transport options and SSL
options (:func:`celery_redis_options`), so the job store, the broker, the limiter, the API and the
operator always talk to the same Redis in the same way. One pool per process and configuration.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from humanizer.config import Settings, get_settings


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached; the message names the (redacted) URL, never the password."""


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's SSL keyword arguments (empty without TLS); certificates are always verified."""
    if not settings.redis_tls_enabled:
        return {}
    opts: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": settings.redis_tls_check_hostname}
    if settings.redis_tls_ca_file:
        opts["ssl_ca_certs"] = settings.redis_tls_ca_file
    if settings.redis_tls_cert_file:
        opts["ssl_certfile"] = settings.redis_tls_cert_file
        opts["ssl_keyfile"] = settings.redis_tls_key_file
    return opts


def sentinel_options(settings: Settings, **socket: float) -> dict[str, Any]:
    """Keyword arguments of the connections to the Sentinels themselves."""
    opts: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0, **socket}
    if settings.redis_sentinel_password is not None:
        opts["password"] = settings.redis_sentinel_password.get_secret_value()
    if settings.redis_sentinel_username:
        opts["username"] = settings.redis_sentinel_username
    if settings.redis_tls_enabled:
        opts.update(ssl=True, **tls_options(settings))
    return opts


def connect(settings: Settings | None = None, **options: Any) -> redis.Redis:
    """A new client for the configured Redis (the primary, with Sentinels); ``options`` as for redis.Redis."""
    settings = settings or get_settings()
    if settings.sentinel_mode:
        host_kw = {k: v for k, v in options.items() if k.startswith("socket_")}
        sentinel = Sentinel(settings.sentinel_hosts, sentinel_kwargs=sentinel_options(settings, **host_kw))
        _, _, db, username, password = settings._url_parts()
        kw: dict[str, Any] = {"db": db, "username": username, "password": password, **options}
        if settings.redis_tls_enabled:
            kw.update(ssl=True, **tls_options(settings))
        return sentinel.master_for(settings.redis_sentinel_master, redis_class=redis.Redis, **kw)
    return redis.Redis.from_url(settings.redis_dsn, **tls_options(settings), **options)


def celery_ssl(settings: Settings) -> dict[str, Any] | None:
    """``broker_use_ssl`` / ``redis_backend_use_ssl``: kombu and Celery pass these to redis-py."""
    opts = tls_options(settings)
    if not opts:
        return None
    return {**opts, "ssl_cert_reqs": ssl.CERT_REQUIRED}


def celery_sentinel_options(settings: Settings) -> dict[str, Any]:
    """Transport options naming the primary and how to reach the Sentinels (empty without Sentinels)."""
    if not settings.sentinel_mode:
        return {}
    return {"master_name": settings.redis_sentinel_master, "sentinel_kwargs": sentinel_options(settings)}


_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def _client(settings: Settings) -> redis.Redis:
    key = settings.redis_identity
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(settings)
        return client


def _new_client(settings: Settings) -> redis.Redis:
    return connect(
        settings,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
        # ride out a Redis restart or failover of a few seconds instead of failing the caller
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=6),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """The process's shared client (one pool per configuration), retrying through a restart or failover."""
    return _client(settings or get_settings())


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
            + ("check REDIS_SENTINELS/REDIS_SENTINEL_MASTER" if settings.sentinel_mode
               else "start it or set REDIS_HOST/REDIS_PORT (or REDIS_URL)")
        ) from exc
    return client
