"""Scenario 2 — against the single-process alternative: asyncio + ``openai.AsyncOpenAI``, semaphore W.

Same fake server, same N = 10·W chunks. Twice: with the SDK's aiohttp-based client
(``openai.DefaultAioHttpClient()``, present in openai 3.51) and with its default (httpx-based) client.
Target: our throughput ≥ 1.0 × the better of the two, at every W.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import openai

from bench.common import FAKE_KEY, Context, CpuMeter, Row, chunk_texts, ideal_makespan, median, ratio

TARGET = 1.0


async def _run(url: str, texts: list[str], w: int, aiohttp: bool) -> float:
    kwargs: dict[str, Any] = {"http_client": openai.DefaultAioHttpClient()} if aiohttp else {}
    client = openai.AsyncOpenAI(base_url=url, api_key=FAKE_KEY, max_retries=0, timeout=60.0, **kwargs)
    sem = asyncio.Semaphore(w)

    async def one(text: str) -> int:
        async with sem:
            resp = await client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": text}], max_tokens=1024
            )
            return len(resp.choices[0].message.content or "")

    async with client:
        await asyncio.gather(*(one(t) for t in texts[: min(w, 8)]))  # warm-up: open connections
        t0 = time.perf_counter()
        await asyncio.gather(*(one(t) for t in texts))
        return time.perf_counter() - t0


def measure(url: str, n: int, w: int, aiohttp: bool, repeats: int, tag: str) -> list[dict[str, Any]]:
    out = []
    for rep in range(repeats):
        meter = CpuMeter({"client": [os.getpid()]}).start()
        makespan = asyncio.run(_run(url, chunk_texts(n, f"{tag}{w}r{rep}"), w, aiohttp))
        out.append({"makespan": makespan, "cpu_seconds": meter.stop()})
    return out


def run(ctx: Context) -> list[Row]:
    cfg = ctx.cfg
    rows: list[Row] = []
    curve: dict[int, dict[str, float]] = ctx.shared.setdefault("efficiency", {})
    ours_rate: dict[int, float] = ctx.shared.get("ours_chunks_per_s", {})
    for w in cfg.fanout_ws:
        n = cfg.fanout_n_per_w * w
        ideal = ideal_makespan(n, w, cfg.latency)
        aio = measure(ctx.fake.url, n, w, True, cfg.repeats, "aio")
        aio_rate = n / median(r["makespan"] for r in aio)
        curve.setdefault(w, {})["asyncio_aiohttp"] = ideal * aio_rate / n
        httpx_rate = None
        hx: list[dict[str, Any]] = []
        if w in cfg.httpx_ws:
            hx = measure(ctx.fake.url, n, w, False, 1, "hx")
            httpx_rate = n / median(r["makespan"] for r in hx)
            curve[w]["asyncio_httpx"] = ideal * httpx_rate / n
        best_name, best = ("aiohttp", aio_rate)
        if httpx_rate is not None and httpx_rate > aio_rate:
            best_name, best = ("httpx", httpx_rate)
        ours = ours_rate.get(w)
        r = ratio(ours, best)
        rows.append(
            Row(
                "2 vs asyncio",
                f"chunks/s W={w} (N={n})",
                None if ours is None else round(ours, 1),
                round(best, 1),
                f"asyncio+AsyncOpenAI ({best_name})",
                None if r is None else round(r, 3),
                f"≥ {TARGET}",
                None if r is None else r >= TARGET,
                note=f"aiohttp {aio_rate:.0f}/s"
                + (
                    f", default httpx {httpx_rate:.0f}/s"
                    if httpx_rate
                    else ", default httpx client not run at this W (quick: W=64 only)"
                ),
                details={"n": n, "w": w, "aiohttp": aio, "httpx": hx, "ideal_seconds": ideal},
            )
        )
    return rows
