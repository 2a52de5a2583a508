"""Scenario 8 — head-of-line: a small job submitted just after a large one, at the same priority.

One worker process with 16 call slots (batches of 16), the fake server at the run's latency. A large job
(``headofline_big`` chunks) is submitted; 0.5 s later a 4-chunk job. Measured: the small job's time from
its submission to its end. Baselines in the same run: the small job alone on the idle worker, and the
same pair with fair scheduling off (``HUMANIZER_FAIR_SCHEDULING=false``: every batch queued at once,
first come first served, as before the scheduler). Target: behind the backlog, at most its time alone
plus one batch's time (one provider call of the run's latency: a batch's calls run at once).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Context, Row, chunk_texts, local_stack, median

SMALL = 4


def _pair(ctx: Context, big: int, tag: str) -> dict[str, float]:
    """Submit the big job, then the small one 0.5 s later; the small job's time and the big one's state."""
    from humanizer.orchestration import OrchestrationService

    svc = OrchestrationService()
    big_job = svc.process_text_parallel(chunk_texts(big, f"{tag}big"), None, enable_verification=False)["job_id"]
    time.sleep(0.5)
    t0 = time.perf_counter()
    small_job = svc.process_text_parallel(chunk_texts(SMALL, f"{tag}small"), None, enable_verification=False)
    view = svc.wait(small_job["job_id"], timeout=600, poll=0.01)
    took = time.perf_counter() - t0
    big_view = svc.view(big_job)
    svc.cancel_job(big_job)
    _drain(svc)
    assert view.status.value == "SUCCESS", view.error
    return {"small_seconds": took, "big_done_then": big_view.progress.completed / big}


def _alone(tag: str) -> float:
    from humanizer.orchestration import OrchestrationService

    svc = OrchestrationService()
    t0 = time.perf_counter()
    job = svc.process_text_parallel(chunk_texts(SMALL, tag), None, enable_verification=False)
    svc.wait(job["job_id"], timeout=60, poll=0.01)
    return time.perf_counter() - t0


def _drain(svc: Any, timeout: float = 120.0) -> None:
    """Wait until the cancelled job's released batches have been skipped (the queue is empty)."""
    from humanizer.monitoring.queues import queue_depth

    s = svc.settings
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queue_depth(svc.store.r, s.chunk_queue, key_prefix=s.broker_key_prefix) == 0:
            time.sleep(0.5)  # the batches a worker still holds finish skipping
            return
        time.sleep(0.1)


def run(ctx: Context) -> list[Row]:
    cfg = ctx.cfg
    big = cfg.headofline_big
    env = {"HUMANIZER_WORKER_CALLS": "16", "HUMANIZER_BATCH_SIZE": "16"}
    results: dict[str, list[dict[str, float]]] = {"fair": [], "fifo": []}
    alone: list[float] = []
    for mode, fair in (("fair", "true"), ("fifo", "false")):
        with local_stack(ctx, 1, 4, HUMANIZER_FAIR_SCHEDULING=fair, **env):
            _alone(f"hol{mode}warm")
            for rep in range(cfg.repeats):
                if mode == "fair":
                    alone.append(_alone(f"hol{mode}alone{rep}"))
                results[mode].append(_pair(ctx, big, f"hol{mode}{rep}"))
    alone_s = median(alone)
    fair_s = median(r["small_seconds"] for r in results["fair"])
    fifo_s = median(r["small_seconds"] for r in results["fifo"])
    limit = alone_s + cfg.latency
    detail = {"alone_seconds": alone, "fair": results["fair"], "fifo": results["fifo"], "big_chunks": big,
              "limit_seconds": limit}
    return [
        Row("8 head-of-line", f"small job behind {big} chunks (fair)", round(fair_s, 3), round(alone_s, 3),
            "the small job alone", round(fair_s / alone_s, 2), f"≤ alone + one batch ({limit:.2f} s)",
            fair_s <= limit, unit="s",
            note=f"big job {100 * median(r['big_done_then'] for r in results['fair']):.0f}% done when it finished",
            details=detail),
        Row("8 head-of-line", f"small job behind {big} chunks (FIFO)", round(fifo_s, 3), round(fair_s, 3),
            "the same, fair", round(fifo_s / fair_s, 1), "info (the baseline)", None, unit="s",
            note="fair scheduling off: every batch queued at submission", details={}),
    ]
