"""The Celery application and sending tasks by name: broker and result backend on Redis, delivery settings
(README "Reliability").

Everything that sends work (job submission, the scheduler's releases, the reconciler, replays) sends it
through :func:`send` by task name, and the worker's task modules (``humanizer.worker.tasks``, loaded by the
worker through ``include``) register as shared tasks on whichever app is current. This module imports neither
``humanizer.jobs`` nor ``humanizer.worker``, so neither depends on the other through it.

The app is built explicitly: every entry point (worker, API, operator, demo, tests) calls
:func:`configure_app` with its settings at start-up; :func:`get_app` builds one from the environment's
settings on first use for library callers that did not. Importing this module configures nothing, and a
new configuration (a test session moving to another Redis) is a new app, not a patched one.

- ``acks_late`` + ``reject_on_worker_lost``: a task is acknowledged only when it finished, so a killed
  worker's task is redelivered instead of lost (our tasks are idempotent, so redelivery is safe).
- prefetch 1: a worker reserves one task per free slot, so a slow worker cannot hoard chunks.
- ``visibility_timeout`` above the longest retry countdown and the hard time limit (checked in
  :class:`~humanizer.config.Settings`), or Redis would hand a running task to a second worker.
- JSON only: no pickle on the wire; task arguments are ids, never document text.
- Queues: chunk rewriting on ``humanize``; merge/verify on ``control`` so a job's merge never waits
  behind thousands of other jobs' chunks. With a key prefix other than the default (``HUMANIZER_KEY_PREFIX``)
  they are ``<prefix>.humanize`` and ``<prefix>.control`` and every kombu key starts with ``<prefix>:``
  (``global_keyprefix``), so releases sharing one Redis database never take each other's messages.
- Redis as configured (redis_client.py): through Sentinel (``sentinel://`` URLs and ``master_name``), with
  TLS (``broker_use_ssl``, ``redis_backend_use_ssl``) and an ACL user, like every other client.
- The broker transport is kombu's Redis (or Sentinel) transport with one change (:class:`RedisTransport`,
  :class:`SentinelTransport`): a worker survives losing its broker connection (a failover, a Redis restart).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery
from celery.backends.redis import RedisBackend, SentinelBackend
from celery.signals import before_task_publish
from kombu.transport import redis as kombu_redis

from humanizer.config import Settings, get_settings
from humanizer.redis_client import celery_sentinel_options, celery_ssl

CHUNK_QUEUE = "humanize"  # logical names (metric labels); the queues themselves: chunk_queue(), control_queue()
CONTROL_QUEUE = "control"

class _Quiet:
    """Celery's Redis result backend without client-side result subscriptions.

    Celery's Redis backend subscribes the sending process to a pub/sub channel for every task it sends
    and every member of a chord's group result, so that ``AsyncResult.get()`` can wake up. Humanizer
    never waits on task results: progress and results are read from the job record. Skipping the
    subscriptions keeps a 2,000-chunk submission from holding 2,000 channels (and from touching Redis
    again when the result objects are garbage-collected). Chord counting, which happens on the workers,
    is unchanged.
    """

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        return result

    def remove_pending_result(self, result: Any) -> Any:
        return result


class QuietRedisBackend(_Quiet, RedisBackend):
    pass


class QuietSentinelBackend(_Quiet, SentinelBackend):
    """The same through Sentinel (``sentinel://h1:p1;sentinel://h2:p2/db``): follows the primary."""


def backend_url(redis_url: str) -> str:
    cls = "QuietSentinelBackend" if redis_url.startswith("sentinel://") else "QuietRedisBackend"
    return f"{__name__}:{cls}+{redis_url}"


def celery_config(settings: Settings) -> dict[str, object]:
    chunk_queue, control_queue = settings.chunk_queue, settings.control_queue
    prefixed = {"global_keyprefix": settings.broker_key_prefix} if settings.broker_key_prefix else {}
    url = settings.celery_redis_url()
    sentinel = celery_sentinel_options(settings)
    tls = celery_ssl(settings)
    transport = SentinelTransport if settings.sentinel_mode else RedisTransport
    return {
        "broker_url": url,
        "broker_transport": f"{transport.__module__}:{transport.__qualname__}",
        "result_backend": backend_url(url),
        "broker_use_ssl": tls or False,
        "redis_backend_use_ssl": tls,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.celery_task_soft_time_limit,
        "task_time_limit": settings.celery_task_time_limit,
        "task_track_started": False,
        "result_expires": settings.result_ttl_seconds,
        "result_extended": False,
        "broker_transport_options": {
            "visibility_timeout": settings.celery_visibility_timeout,
            # serve queues in the order the worker lists them (control first), and within each
            # priority step high before normal before low
            "queue_order_strategy": "priority",
            "priority_steps": [0, 3, 6, 9],
            # Bounded socket operations, as for our own clients (redis_client.py). Without a timeout a
            # broker socket is blocking, and redis-py's connection check (hiredis parser) can then block
            # forever in recv(MSG_PEEK) on a socket that polls POLLERR: seen on a real node, a worker
            # started while Redis' Service had no endpoint yet hung in its first connect for good.
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            **prefixed,
            **sentinel,
        },
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}, **sentinel},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_default_queue": chunk_queue,
        "task_default_priority": 3,
        "task_routes": {
            "humanizer.humanize_batch": {"queue": chunk_queue},
            "humanizer.merge": {"queue": control_queue},
            "humanizer.verify": {"queue": control_queue},
        },
        "timezone": "UTC",
    }


class _SurvivesConnectionLoss:
    """A channel of a lost broker connection fails with a connection error, never an AttributeError.

    After a lost broker connection Celery's consumer calls kombu's ``Connection.collect()``, which drops
    the transport's client (``Transport.client = None``), then ``close()``. kombu's channel then needs that
    client, or its transport (``Channel.connection``, None once closed), to make a new Redis client in two
    places, and fails with an AttributeError, which Celery treats as unrecoverable: the worker left (found
    killing the primary behind Sentinel, with processes and on a real node):

    * closing a channel that ``collect()`` could not close (its close read the reply of a BRPOP in flight,
      which fails on the dead socket) restores its unacknowledged messages:
      ``'NoneType' object has no attribute 'hostname'``;
    * a task that ran through the connection loss acknowledges its message on the closed channel
      (``acks_late``): ``'NoneType' object has no attribute 'client'``.

    Neither can reach Redis through a dead connection anyway. Closing skips the restore, and an
    acknowledgement or rejection raises ``redis.ConnectionError``, which Celery logs ("Couldn't ack") and
    goes on; the messages stay in Redis' unacked set, and the visibility timeout (and the job store's
    reconciler) bring them back, as after a killed worker (our tasks are idempotent).
    """

    connection: Any
    do_restore: bool

    def close(self) -> None:
        if self.connection is not None and self.connection.client is None:
            self.do_restore = False
        super().close()  # type: ignore[misc]

    def _check_open(self, what: str) -> None:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError(f"cannot {what} a message: its broker connection was lost")

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        self._check_open("acknowledge")
        super().basic_ack(delivery_tag, multiple=multiple)  # type: ignore[misc]

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        self._check_open("reject")
        super().basic_reject(delivery_tag, requeue=requeue)  # type: ignore[misc]


class RedisChannel(_SurvivesConnectionLoss, kombu_redis.Channel):
    pass


class SentinelChannel(_SurvivesConnectionLoss, kombu_redis.SentinelChannel):
    pass


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


_lock = threading.Lock()
_current: tuple[dict[str, object], Celery] | None = None


def configure_app(settings: Settings | None = None) -> Celery:
    """A new Celery app for ``settings`` (the environment's when None), made current and default for every
    thread; the previous one is closed (Celery's public ``close``). Every call builds a new one, even for an
    equal configuration: a process (a test session, the demo) that moves to another Redis, or to a new
    Redis server at the same address, must not reuse the clients, producers and result backend made for
    the old one (the same app kept them: a ping then failed with "Connection closed by server")."""
    global _current
    config = celery_config(settings or get_settings())
    with _lock:
        if _current is not None:
            _current[1].close()
        celery = Celery("humanizer", include=["humanizer.worker.tasks"], set_as_current=True)
        celery.conf.update(config)
        celery.set_default()
        _current = (config, celery)
        return celery


def get_app() -> Celery:
    """The configured app (built from the environment's settings if no entry point configured one)."""
    current = _current
    return current[1] if current is not None else configure_app()


def chunk_queue() -> str:
    """The queue chunk batches go to, as the app is configured now."""
    return str(get_app().conf.task_routes["humanizer.humanize_batch"]["queue"])


def control_queue() -> str:
    """The queue merges and verifications go to, as the app is configured now."""
    return str(get_app().conf.task_routes["humanizer.merge"]["queue"])


def send(name: str, args: Sequence[Any], *, queue: str, priority: int, task_id: str) -> None:
    """Send task ``name`` (``humanizer.humanize_batch``, ``humanizer.merge``, ``humanizer.verify``) with
    ``args`` to ``queue``; the worker's task of that name runs it. Arguments are ids, never document text."""
    get_app().signature(name, args=tuple(args), immutable=True, queue=queue, priority=priority).apply_async(
        task_id=task_id
    )


@before_task_publish.connect
def _stamp(headers: dict[str, object] | None = None, **kwargs: object) -> None:
    """Record the publish time in the message headers (queue-wait metric)."""
    from humanizer.metrics import stamp_publish_time

    stamp_publish_time(headers=headers)
