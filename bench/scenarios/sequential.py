"""Scenario 3 — against the sequential baseline: one call at a time (sync ``openai.OpenAI``).

Running N = 1,280 calls one by one would take minutes, so a sample of calls gives the mean time per
call and the sequential makespan for N is that × N. Speed-up = sequential makespan / ours.
Informational (the issue sets no target); the ideal speed-up is W.
"""

from __future__ import annotations

import time

import openai

from bench.common import FAKE_KEY, Context, Row, chunk_texts


def run(ctx: Context) -> list[Row]:
    cfg = ctx.cfg
    client = openai.OpenAI(base_url=ctx.fake.url, api_key=FAKE_KEY, max_retries=0, timeout=30.0)
    texts = chunk_texts(cfg.sequential_calls + 1, "seq")
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": texts[0]}])
    t0 = time.perf_counter()
    for t in texts[1:]:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": t}], max_tokens=1024)
    per_call = (time.perf_counter() - t0) / cfg.sequential_calls
    client.close()
    rows = []
    for w, ours_rate in sorted(ctx.shared.get("ours_chunks_per_s", {}).items()):
        n = cfg.fanout_n_per_w * w
        seq_makespan = per_call * n
        ours_makespan = n / ours_rate
        rows.append(
            Row(
                "3 vs sequential",
                f"speed-up W={w} (N={n})",
                round(ours_makespan, 2),
                round(seq_makespan, 1),
                "one call at a time",
                round(seq_makespan / ours_makespan, 1),
                f"info (ideal {w}×)",
                None,
                unit="s",
                note=f"sequential {per_call * 1000:.0f} ms/call over {cfg.sequential_calls} calls, extrapolated to N",
                details={"per_call_seconds": per_call, "sample_calls": cfg.sequential_calls},
            )
        )
    if not rows:
        rows.append(
            Row(
                "3 vs sequential",
                "per call",
                None,
                round(per_call, 4),
                "one call at a time",
                None,
                "info",
                None,
                unit="s",
                status="not run",
                note="needs scenario 1 (fanout) in the same run for our makespan",
            )
        )
    return rows
