"""Queue depth as kombu's Redis transport stores it (shared by health checks, /metrics and the autoscaler).

A queue ``q`` is several Redis lists, one per priority step: ``q`` itself (priority 0) and ``q\\x06\\x163``,
``q\\x06\\x166``, ``q\\x06\\x169``. Messages a worker has taken but not acknowledged (``acks_late``, and
tasks waiting for their ETA/countdown) sit in the ``unacked`` hash instead.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Iterator

import redis

PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"


def priority_lists(queue: str, steps: Iterable[int] = PRIORITY_STEPS) -> list[str]:
    """The Redis list names that hold ``queue``'s messages."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in steps]


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in ``queue``, every priority level counted."""
    pipe = client.pipeline(transaction=False)
    for name in priority_lists(queue):
        pipe.llen(name)
    return sum(int(n) for n in pipe.execute())


def queue_depths(client: redis.Redis, queues: Iterable[str]) -> dict[str, int]:
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for name in priority_lists(queue):
            pipe.llen(name)
    counts = [int(n) for n in pipe.execute()]
    per = len(PRIORITY_STEPS)
    return {q: sum(counts[i * per : (i + 1) * per]) for i, q in enumerate(queues)}


def held_messages(client: redis.Redis, key: str = UNACKED_KEY) -> Iterator[tuple[str, str]]:
    """``(task id, queue)`` of each message delivered to a worker and not yet acknowledged. Kombu stores
    each as ``[message, exchange, routing key]``; our routing keys are the queue names. A field that cannot
    be read is ``""``."""
    for _tag, raw in client.hscan_iter(key, count=500):
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = None
        message = entry[0] if isinstance(entry, list) and entry and isinstance(entry[0], dict) else {}
        headers = message.get("headers")
        task_id = headers.get("id") if isinstance(headers, dict) else None
        queue = entry[2] if isinstance(entry, list) and len(entry) > 2 else None
        yield str(task_id or ""), str(queue or "")


def unacked_by_queue(client: redis.Redis, key: str = UNACKED_KEY) -> collections.Counter[str]:
    """Messages delivered and not yet acknowledged, by the queue they came from."""
    return collections.Counter(queue for _task_id, queue in held_messages(client, key))


def unacked_count(client: redis.Redis, key: str = UNACKED_KEY) -> int:
    """Messages delivered to workers and not yet acknowledged (running, or waiting for a countdown)."""
    return int(client.hlen(key))
