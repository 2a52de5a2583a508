"""The gauges read from Redis when the API's /metrics is scraped: queue depths, unacked messages, pending dead
letters, and what the fair scheduler holds (the metrics themselves: ``humanizer/metrics.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from humanizer import metrics
from humanizer.config import broker_key_prefix_for, queue_name_for
from humanizer.jobs.scheduler import Scheduler
from humanizer.monitoring.queues import queue_depth_by_priority, unacked_count


def refresh_queue_gauges(client: Any, queues: Iterable[str] = ("humanize", "control"), prefix: str = "hz") -> None:
    """Set the queue-depth (per queue and priority step), unacked and dead-letter gauges from Redis (queues
    by logical name: the label)."""
    broker = broker_key_prefix_for(prefix)
    for queue in queues:
        depths = queue_depth_by_priority(client, queue_name_for(prefix, queue), key_prefix=broker)
        for step, depth in depths.items():
            metrics.QUEUE_DEPTH.labels(queue, str(step)).set(depth)
    metrics.QUEUE_UNACKED.set(unacked_count(client, key_prefix=broker))
    metrics.DEAD_LETTERS_PENDING.set(int(client.zcard(f"{prefix}:dlq:index")))
    snapshot = Scheduler(client, prefix).snapshot()
    metrics.SCHEDULER_HELD.set(snapshot["held_chunks"])
    metrics.SCHEDULER_WINDOW.set(snapshot["window"])
