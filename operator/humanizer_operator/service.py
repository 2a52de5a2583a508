"""The operator's handles on Humanizer: settings, the job store, the orchestration service.

The operator uses the same code paths as the API: ``submit_job`` to start a job,
``OrchestrationService.cancel_job`` to stop one, the job store to read progress.
"""

from __future__ import annotations

import functools

import redis

from humanizer.config import Settings, get_settings
from humanizer.jobs.store import JobStore
from humanizer.orchestration import OrchestrationService
from humanizer.redis_client import connect


@functools.cache
def orchestration() -> OrchestrationService:
    return OrchestrationService(get_settings())


def store() -> JobStore:
    return orchestration().store


def settings() -> Settings:
    return get_settings()


_fast: dict[str, redis.Redis] = {}


def fast_redis(settings: Settings) -> redis.Redis:
    """A client that fails fast (no retry loop): the autoscaler must notice an outage within a tick.

    The configured Redis as every other client reaches it (redis_client.connect): through Sentinel
    (the current primary), with TLS and the ACL user."""
    key = settings.redis_identity
    client = _fast.get(key)
    if client is None:
        client = _fast[key] = connect(settings, decode_responses=True, socket_connect_timeout=1.0, socket_timeout=2.0)
    return client

