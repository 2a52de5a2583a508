"""Queue depth as kombu's Redis transport stores it (shared by health checks, /metrics and the autoscaler).

A queue ``q`` is several Redis lists, one per priority step: ``q`` itself (priority 0) and ``q\\x06\\x163``,
``q\\x06\\x166``, ``q\\x06\\x169``. Messages a worker has taken but not acknowledged (``acks_late``, and
tasks waiting for their ETA/countdown) sit in the ``unacked`` hash instead, their delivery times in the
``unacked_index`` sorted set.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis

PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"  # delivery tag -> the time it was delivered (a sorted set)


def priority_lists(queue: str, steps: Iterable[int] = PRIORITY_STEPS, key_prefix: str = "") -> list[str]:
    """The Redis list names that hold ``queue``'s messages."""
    return [key_prefix + (queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}") for step in steps]


def queue_depth(client: redis.Redis, queue: str, key_prefix: str = "") -> int:
    """Messages waiting in ``queue``, every priority level counted."""
    pipe = client.pipeline(transaction=False)
    for name in priority_lists(queue, key_prefix=key_prefix):
        pipe.llen(name)
    return sum(int(n) for n in pipe.execute())


def queue_depth_by_priority(client: redis.Redis, queue: str, key_prefix: str = "") -> dict[int, int]:
    """Messages waiting in ``queue`` per priority step (0, 3, 6, 9)."""
    pipe = client.pipeline(transaction=False)
    for name in priority_lists(queue, key_prefix=key_prefix):
        pipe.llen(name)
    return {step: int(n) for step, n in zip(PRIORITY_STEPS, pipe.execute(), strict=True)}


def queue_depths(client: redis.Redis, queues: Iterable[str], key_prefix: str = "") -> dict[str, int]:
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for name in priority_lists(queue, key_prefix=key_prefix):
            pipe.llen(name)
    counts = [int(n) for n in pipe.execute()]
    per = len(PRIORITY_STEPS)
    return {q: sum(counts[i * per : (i + 1) * per]) for i, q in enumerate(queues)}


def _entry(raw: Any) -> tuple[str, str]:
    """``(task id, queue)`` of one unacked-hash entry; a field that cannot be read is ``""``."""
    try:
        entry = json.loads(raw)
    except (TypeError, ValueError):
        entry = None
    message = entry[0] if isinstance(entry, list) and entry and isinstance(entry[0], dict) else {}
    headers = message.get("headers")
    task_id = headers.get("id") if isinstance(headers, dict) else None
    queue = entry[2] if isinstance(entry, list) and len(entry) > 2 else None
    return str(task_id or ""), str(queue or "")


def held_messages(
    client: redis.Redis, key: str = UNACKED_KEY, key_prefix: str = ""
) -> Iterator[tuple[str, str]]:
    """``(task id, queue)`` of each message delivered to a worker and not yet acknowledged. Kombu stores
    each as ``[message, exchange, routing key]``; our routing keys are the queue names. A field that cannot
    be read is ``""``."""
    for _tag, raw in client.hscan_iter(key_prefix + key, count=500):
        yield _entry(raw)


def held_by_age(
    client: redis.Redis, visibility_timeout: float, now: float | None = None, key: str = UNACKED_KEY,
    index_key: str = UNACKED_INDEX_KEY, key_prefix: str = "",
) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Held messages by queue, split at the visibility timeout: ``(live, expired)``.

    Kombu records each delivery's time (the worker's ``time.time()``) in the ``unacked_index`` sorted set,
    keyed like the hash by delivery tag. An entry older than ``visibility_timeout`` is one a live worker
    would have acknowledged or rejected by now (the task time limit is below the timeout): its worker
    died, and the next ``restore_visible`` of any worker's consumer puts it back on its queue. An entry
    missing from the index (between kombu's two writes) counts as live."""
    ceiling = (time.time() if now is None else now) - visibility_timeout
    expired_tags = set(client.zrangebyscore(key_prefix + index_key, "-inf", ceiling))
    live: collections.Counter[str] = collections.Counter()
    expired: collections.Counter[str] = collections.Counter()
    for tag, raw in client.hscan_iter(key_prefix + key, count=500):
        _task_id, queue = _entry(raw)
        (expired if tag in expired_tags else live)[queue] += 1
    return live, expired


def unacked_by_queue(
    client: redis.Redis, key: str = UNACKED_KEY, key_prefix: str = ""
) -> collections.Counter[str]:
    """Messages delivered and not yet acknowledged, by the queue they came from."""
    return collections.Counter(queue for _task_id, queue in held_messages(client, key, key_prefix))


def unacked_count(client: redis.Redis, key: str = UNACKED_KEY, key_prefix: str = "") -> int:
    """Messages delivered to workers and not yet acknowledged (running, or waiting for a countdown)."""
    return int(client.hlen(key_prefix + key))
