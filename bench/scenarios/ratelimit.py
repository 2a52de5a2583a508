"""Scenario 5 — rate-limit saturation: the fake server enforces R requests/min (429 beyond, sliding
60-s window) and our limiter is set to the same R (``HUMANIZER_RATE_LIMIT_RPM``).

After a warm-up job (every worker thread has its HTTP client), enough chunks for D seconds go in at once;
the achieved rate is what the server admitted: (n − 1) / (t_last − t_first) over its own arrival times,
divided by R/60. Target ≥ 0.97 with zero 429s.
With D < 60 s (quick) the server's 60-s window is never full, so zero 429s is only meaningful at D = 60.
"""

from __future__ import annotations

from bench.common import Context, Row, chunk_texts, local_stack
from bench.ours import run_job

TARGET = 0.97


def run(ctx: Context) -> list[Row]:
    cfg = ctx.cfg
    rpm, d = cfg.ratelimit_rpm, cfg.ratelimit_seconds
    per_s = rpm / 60.0
    n = int(per_s * d) + 1  # D seconds' worth after the first
    try:
        with local_stack(ctx, 2, 16, HUMANIZER_RATE_LIMIT_RPM=str(rpm)) as _stack:
            run_job(chunk_texts(32, "rlwarm"))
            ctx.fake.configure(rpm=rpm)
            ctx.fake.reset(keep_config=True)
            r = run_job(chunk_texts(n, "rl"), timeout=d * 3 + 60)
            stats = ctx.fake.stats()
    finally:
        ctx.fake.configure(rpm=None)
        ctx.fake.reset(keep_config=True)
    ok = sorted(x["t"] for x in stats["requests"] if x["status"] == 200)
    span = ok[-1] - ok[0]
    admitted = len(ok)
    achieved = (admitted - 1) / span if span > 0 else float("nan")
    n429 = int(stats["by_status"].get("429", 0))
    frac = achieved / per_s
    return [
        Row(
            "5 rate limit",
            f"achieved/limit over {span:.0f} s at {rpm}/min",
            round(achieved * 60, 1),
            float(rpm),
            "the limit",
            round(frac, 3),
            f"≥ {TARGET}, 0×429",
            frac >= TARGET and n429 == 0,
            unit="/min",
            note=f"{n429} × 429; {n} chunks in {r['makespan']:.1f} s",
            details={
                "admitted": admitted,
                "span_seconds": span,
                "n429": n429,
                "chunks": n,
                "makespan": r["makespan"],
                "retries": r["retries"],
                "by_status": stats["by_status"],
            },
        )
    ]
