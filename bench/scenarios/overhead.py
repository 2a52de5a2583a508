"""Scenario 4 — orchestration overhead with an instant provider (fake server latency 0).

Ours: N chunks through the whole pipeline (job record, rate-limiter check, provider call over HTTP,
first-writer-wins output, chord, merge). Baseline: a plain Celery ``group`` of N no-op tasks on the same
Redis server (db 1), same worker processes × threads, in the same run. Reported: chunks/s (ratio target
≥ 0.6 of the plain group's rate) and CPU seconds per 1,000 chunks for workers, Redis and the client.
"""

from __future__ import annotations

import os
from typing import Any

from bench.common import Context, CpuMeter, Row, chunk_texts, local_stack, median, process_groups, ratio
from bench.ours import run_job

TARGET = 0.6


def _per_k(cpu: dict[str, float], n: int) -> dict[str, float]:
    return {k: round(v * 1000 / n, 2) for k, v in cpu.items()}


def run(ctx: Context) -> list[Row]:
    from bench.baselines import plain_celery

    cfg = ctx.cfg
    n, procs, threads = cfg.overhead_chunks, cfg.overhead_workers, cfg.overhead_concurrency
    ctx.fake.configure(latency=0.0, jitter=0.0)
    try:
        with local_stack(ctx, procs, threads) as stack:
            groups = process_groups(ctx, stack)
            run_job(chunk_texts(min(n, 100), "ovwarm"))
            ours: list[dict[str, Any]] = []
            for rep in range(cfg.repeats):
                meter = CpuMeter(groups).start()
                r = run_job(chunk_texts(n, f"ov{rep}"))
                r["cpu_seconds"] = meter.stop()
                r["cpu_per_1000"] = _per_k(r["cpu_seconds"], n)
                r.pop("job_id")
                ours.append(r)
            broker = stack.redis.url.rsplit("/", 1)[0] + "/1"
            plain_celery.configure(broker)
            plain: list[dict[str, Any]] = []
            with plain_celery.PlainWorkers(procs, threads, broker, ctx.fake.url, ctx.work_dir / "plain-ov") as pw:
                pgroups = {"client": [os.getpid()], "workers": pw.pids, "redis": [stack.redis.proc.pid]}
                plain_celery.run_group(min(n, 100))
                for _ in range(cfg.repeats):
                    meter = CpuMeter(pgroups).start()
                    pr: dict[str, Any] = dict(plain_celery.run_group(n))
                    pr["cpu_seconds"] = meter.stop()
                    pr["cpu_per_1000"] = _per_k(pr["cpu_seconds"], n)
                    plain.append(pr)
    finally:
        ctx.fake.configure(latency=cfg.latency, jitter=cfg.jitter)
    ours_rate = n / median(r["makespan"] for r in ours)
    plain_rate = n / median(r["makespan"] for r in plain)
    rr = ratio(ours_rate, plain_rate)
    mid_o = sorted(ours, key=lambda x: x["makespan"])[len(ours) // 2]["cpu_per_1000"]
    mid_p = sorted(plain, key=lambda x: x["makespan"])[len(plain) // 2]["cpu_per_1000"]
    rows = [
        Row(
            "4 overhead",
            f"chunks/s, instant provider (N={n}, {procs}×{threads})",
            round(ours_rate, 1),
            round(plain_rate, 1),
            "plain Celery group of no-ops",
            None if rr is None else round(rr, 3),
            f"≥ {TARGET}",
            None if rr is None else rr >= TARGET,
            unit="/s",
            details={"ours": ours, "plain_celery": plain},
        )
    ]
    for part in ("workers", "redis", "client"):
        rows.append(
            Row(
                "4 overhead",
                f"CPU s per 1,000 chunks: {part}",
                mid_o[part],
                mid_p[part],
                "plain Celery group",
                None if not mid_p[part] else round(mid_o[part] / mid_p[part], 2),
                "info",
                None,
                unit="s",
                note=f"not counted: the fake server's {mid_o['fake_llm']} s (ours only)" if part == "workers" else "",
            )
        )
    return rows
