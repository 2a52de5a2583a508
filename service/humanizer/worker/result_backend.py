"""Celery's Redis result backend without client-side result subscriptions.

Celery's Redis backend subscribes the sending process to a pub/sub channel for every task it sends
and every member of a chord's group result, so that ``AsyncResult.get()`` can wake up. Humanizer
never waits on task results: progress and results are read from the job record. Skipping the
subscriptions keeps a 2,000-chunk submission from holding 2,000 channels (and from touching Redis
again when the result objects are garbage-collected). Chord counting, which happens on the workers,
is unchanged.
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend, SentinelBackend


class _Quiet:
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
