"""Cutting a job into batch tasks, and what a worker's call capacity is."""

from __future__ import annotations

import pytest

from humanizer.config import Settings
from humanizer.jobs.dispatch import batch_task_id, batches

pytestmark = pytest.mark.unit


def test_batches_keep_order_and_cover_everything() -> None:
    assert batches(range(10), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches([7, 2, 9], 8) == [[7, 2, 9]]
    assert batches([], 8) == []
    assert batches([1, 2], 0) == [[1], [2]]  # a size below 1 is treated as 1


def test_batch_task_ids_are_deterministic_per_round() -> None:
    assert batch_task_id("j", 8) == "j:8"
    assert batch_task_id("j", 8, 2) == "j:8:r2"


@pytest.mark.parametrize(
    ("calls", "concurrency", "batch", "expected"),
    [(64, 16, 8, 64), (0, 16, 8, 128), (200, 4, 8, 32), (3, 4, 4, 3)],
)
def test_calls_per_worker(calls: int, concurrency: int, batch: int, expected: int) -> None:
    s = Settings(worker_calls=calls, celery_worker_concurrency=concurrency, batch_size=batch)
    assert s.calls_per_worker == expected


def test_defaults_hold_twice_the_call_slots() -> None:
    s = Settings()
    assert (s.worker_calls, s.batch_size, s.celery_worker_concurrency) == (64, 16, 8)
    assert s.celery_worker_concurrency * s.batch_size == 2 * s.worker_calls
