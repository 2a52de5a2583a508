"""Flower's Celery app: the broker as the release's workers reach it (rendered into the ConfigMap <release>-flower).

The Flower image runs ``celery -A humanizer_flower flower`` with this file on PYTHONPATH. It reads the variables
the Humanizer pods read (names as in service/humanizer/config.py): the release's ConfigMap (REDIS_SENTINELS,
REDIS_SENTINEL_MASTER, REDIS_DB, REDIS_USERNAME, REDIS_TLS*, HUMANIZER_KEY_PREFIX, CELERY_VISIBILITY_TIMEOUT)
and the passwords from their Secrets (REDIS_PASSWORD, REDIS_SENTINEL_PASSWORD, or REDIS_URL), so no password is
in this file, in a ConfigMap or in an argument. It gives Celery what service/humanizer/broker.py ``celery_config``
gives the workers for the broker: the ``sentinel://`` list and ``master_name`` (Sentinels' password and TLS in
``sentinel_kwargs``), TLS with the CA bundle and client certificate (``broker_use_ssl``, certificates always
verified), the ACL user, ``global_keyprefix`` for a key prefix other than ``hz`` (so Flower sees this release's
queues and workers) and the same transport options (a different ``visibility_timeout`` would make Flower's
connection hand running tasks to a second worker). tests/unit/test_flower_config.py holds it equal to
``celery_config``; it imports only Celery and the standard library (the image has no Humanizer).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from celery import Celery

DEFAULT_KEY_PREFIX = "hz"


def _get(env: Mapping[str, str], name: str) -> str | None:
    """A variable as pydantic-settings reads it: unset and empty are the setting's default."""
    value = env.get(name)
    return value if value else None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _get(env, name)
    if value is None:
        return default
    text = value.strip().lower()
    if text in ("1", "true", "t", "yes", "y", "on"):
        return True
    if text in ("0", "false", "f", "no", "n", "off"):
        return False
    raise ValueError(f"{name}: {value!r} is not a boolean")


def sentinel_hosts(text: str) -> list[tuple[str, int]]:
    """REDIS_SENTINELS ``host:port,...`` (port default 26379; ``[::1]:26379`` for IPv6)."""
    out: list[tuple[str, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        host, port = item, "26379"
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest.startswith(":"):
                port = rest[1:]
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
        out.append((host, int(port)))
    return out


def _url(scheme: str, host: str, port: int, db: int, username: str | None, password: str | None) -> str:
    auth = ""
    if username or password is not None:
        secret = ":" + quote(password, safe="") if password is not None else ""
        auth = quote(username or "", safe="") + secret + "@"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{auth}{host}:{port}/{db}"


def config(env: Mapping[str, str]) -> dict[str, Any]:
    """Celery settings for Flower from ``env`` (the container's environment)."""
    username = _get(env, "REDIS_USERNAME")
    password = env.get("REDIS_PASSWORD")  # set (even empty): AUTH with it, as the settings do
    db = int(_get(env, "REDIS_DB") or 0)
    redis_url = _get(env, "REDIS_URL")
    tls = _flag(env, "REDIS_TLS", False) or (redis_url or "").startswith("rediss://")
    sentinels = sentinel_hosts(_get(env, "REDIS_SENTINELS") or "")

    tls_options: dict[str, Any] = {}
    if tls:
        tls_options = {"ssl_cert_reqs": "required", "ssl_check_hostname": _flag(env, "REDIS_TLS_CHECK_HOSTNAME", True)}
        if _get(env, "REDIS_TLS_CA_FILE"):
            tls_options["ssl_ca_certs"] = env["REDIS_TLS_CA_FILE"]
        if _get(env, "REDIS_TLS_CERT_FILE"):
            tls_options["ssl_certfile"] = env["REDIS_TLS_CERT_FILE"]
            tls_options["ssl_keyfile"] = _get(env, "REDIS_TLS_KEY_FILE")

    sentinel: dict[str, Any] = {}
    if sentinels:
        if redis_url:
            raise ValueError("REDIS_SENTINELS and REDIS_URL exclude each other")
        # kombu's form: one sentinel:// URL per Sentinel, the primary's user, password and database in each
        url = ";".join(_url("sentinel", h, p, db, username, password) for h, p in sentinels)
        sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}
        if "REDIS_SENTINEL_PASSWORD" in env:
            sentinel_kwargs["password"] = env["REDIS_SENTINEL_PASSWORD"]
        if _get(env, "REDIS_SENTINEL_USERNAME"):
            sentinel_kwargs["username"] = env["REDIS_SENTINEL_USERNAME"]
        if tls:
            sentinel_kwargs.update(ssl=True, **tls_options)
        sentinel = {"master_name": _get(env, "REDIS_SENTINEL_MASTER") or "mymaster", "sentinel_kwargs": sentinel_kwargs}
    else:
        if redis_url:  # from the Secret, percent-encoded by whoever wrote it
            u = urlsplit(redis_url)
            path = u.path.strip("/")
            host, port, db = u.hostname or "127.0.0.1", u.port or 6379, int(path) if path.isdigit() else 0
            username = unquote(u.username) if u.username else username
            password = unquote(u.password) if u.password is not None else password
        else:
            host, port = _get(env, "REDIS_HOST") or "127.0.0.1", int(_get(env, "REDIS_PORT") or 6379)
        # rediss:// (not redis:// with broker_use_ssl only, as for the workers): Flower's broker page picks its
        # Redis client by the URL's scheme, and only its rediss:// one speaks TLS
        url = _url("rediss" if tls else "redis", host, port, db, username, password)

    prefix = _get(env, "HUMANIZER_KEY_PREFIX") or DEFAULT_KEY_PREFIX
    prefixed = {"global_keyprefix": f"{prefix}:"} if prefix != DEFAULT_KEY_PREFIX else {}
    return {
        "broker_url": url,
        "broker_use_ssl": {**tls_options, "ssl_cert_reqs": ssl.CERT_REQUIRED} if tls else False,
        "broker_transport_options": {
            "visibility_timeout": int(_get(env, "CELERY_VISIBILITY_TIMEOUT") or 3600),
            "queue_order_strategy": "priority",
            "priority_steps": [0, 3, 6, 9],
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            **prefixed,
            **sentinel,
        },
        "broker_connection_retry_on_startup": True,
        "accept_content": ["json"],
        "timezone": "UTC",
    }


app = Celery("humanizer-flower")
app.config_from_object(config(os.environ))
