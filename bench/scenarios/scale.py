"""Scenario 7 — scale and leaks.

a) A ~1 MB document end to end through the HTTP API (a real ``humanizer api`` process): POST /v1/jobs,
   poll the job, GET its result. W = 64 (2 processes × 32 call slots). Peak RSS of the API, the workers
   and Redis.
b) Many small jobs one after another (instant provider); each is deleted once its result is read, as a
   client that has consumed it would. Worker RSS and Redis ``used_memory`` after the warm-up jobs and at
   the end must stay within 10 %. Keys: DBSIZE after the warm-up vs the end; every key that is left must
   carry a TTL (so nothing outlives its TTL).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from typing import Any

import httpx2

from bench.common import Context, PeakRss, Row, chunk_texts, local_stack, our_layout, rss_bytes, worker_pids
from bench.ours import run_job

API_TOKEN = "bench-scale-token-0001"

MB = 1024 * 1024
GROWTH_LIMIT = 0.10


def document(size: int) -> str:
    paras, total, i = [], 0, 0
    while total < size:
        p = (
            f"Section {i:05d}. It is important to note that the organisation utilizes robust frameworks "
            f"to leverage synergies across {i % 97 + 3} teams. Furthermore, the quarterly review found that "
            f"delivery improved in a meaningful way, and the committee concluded that further investment "
            f"is warranted. Moreover, stakeholders were consulted in detail before the decision."
        )
        paras.append(p)
        total += len(p) + 2
        i += 1
    return "\n\n".join(paras) + "\n"


def _through_api(url: str, text: str, timeout: float = 900.0) -> dict[str, Any]:
    """POST the document, poll the job until it ends, GET the result; the clock covers all three."""
    with httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=60) as client:
        t0 = time.perf_counter()
        resp = client.post("/v1/jobs", json={"text": text, "verify": False})
        resp.raise_for_status()
        t_post = time.perf_counter()
        job_id = resp.json()["job_id"]
        while True:
            view = client.get(f"/v1/jobs/{job_id}").json()
            if view["status"] in ("SUCCESS", "FAILURE", "CANCELLED"):
                break
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"job {job_id} still {view['status']} after {timeout}s")
            time.sleep(0.02)
        if view["status"] != "SUCCESS":
            raise RuntimeError(f"job {job_id} ended {view['status']}: {view.get('error')}")
        t_done = time.perf_counter()
        result = client.get(f"/v1/jobs/{job_id}/result")
        result.raise_for_status()
        out = result.json()["humanized_text"]
        t1 = time.perf_counter()
    return {
        "job_id": job_id,
        "chunks": view["progress"]["total"],
        "makespan": t1 - t0,
        "post_seconds": t_post - t0,
        "result_seconds": t1 - t_done,
        "result_bytes": len(out.encode()),
    }


def _pattern(key: str) -> str:
    key = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", key)
    return re.sub(r"[0-9a-f]{32}", "<job>", re.sub(r"(?<=:)\d+", "<i>", key))


def _s(key: str | bytes) -> str:
    return key.decode() if isinstance(key, bytes) else key


def _leftovers(r: Any, before: set[Any]) -> dict[str, Any]:
    keys = set(r.scan_iter(count=1000)) - before
    no_ttl = sorted(_s(k) for k in keys if r.ttl(k) == -1)
    patterns: Counter[str] = Counter()
    ttls: dict[str, int] = {}
    for k in keys:
        p = _pattern(_s(k))
        patterns[p] += 1
        ttls.setdefault(p, int(r.ttl(k)))
    return {
        "new_keys": len(keys),
        "new_keys_without_ttl": no_ttl[:20],
        "n_without_ttl": len(no_ttl),
        "patterns": dict(patterns.most_common(10)),
        "ttl_seconds_by_pattern": ttls,
    }


def run(ctx: Context) -> list[Row]:
    from humanizer.api.testing import start_api_process
    from humanizer.orchestration import OrchestrationService

    cfg = ctx.cfg
    rows: list[Row] = []
    text = document(cfg.scale_doc_bytes)
    procs, held, our_env = our_layout(64)
    with local_stack(ctx, procs, held, HUMANIZER_MAX_CHUNKS="20000", **our_env) as stack:
        wp, rp = worker_pids(stack), [stack.redis.proc.pid]
        svc = OrchestrationService()
        r = svc.store.r
        run_job(chunk_texts(32, "scwarm"))
        api_env = {**stack.env, "HUMANIZER_API_TOKENS": API_TOKEN, "LOG_LEVEL": "WARNING"}
        with start_api_process(api_env) as api:
            _through_api(api.url, document(3000))  # warm-up: the API's first request loads the tokenizer
            with PeakRss({"api": [api.proc.pid], "workers": wp, "redis": rp}) as peak:
                job = _through_api(api.url, text)
        w = 64
        ideal = math.ceil(job["chunks"] / w) * cfg.latency
        rows.append(
            Row(
                "7 scale",
                f"{len(text.encode()) / MB:.2f} MB document end to end via the API (W=64)",
                round(job["makespan"], 2),
                round(ideal, 2),
                "ideal ceil(N/W)×latency",
                round(ideal / job["makespan"], 3),
                "info",
                None,
                unit="s",
                note=f"{job['chunks']} chunks, {job['chunks'] / job['makespan']:.0f} chunks/s, POST answered in "
                f"{job['post_seconds']:.2f} s, result {job['result_bytes'] / MB:.2f} MB fetched in "
                f"{job['result_seconds']:.2f} s; peak RSS API {peak.peak['api'] / MB:.0f} MB, workers "
                f"{peak.peak['workers'] / MB:.0f} MB, Redis {peak.peak['redis'] / MB:.0f} MB",
                details={
                    **job,
                    "peak_rss_api": peak.peak["api"],
                    "peak_rss_workers": peak.peak["workers"],
                    "peak_rss_redis": peak.peak["redis"],
                    "doc_bytes": len(text.encode()),
                },
            )
        )
        svc.store.delete([job["job_id"]])

        ctx.fake.configure(latency=0.0, jitter=0.0)
        try:
            samples: list[dict[str, float]] = []
            base_keys: set[Any] = set()
            base: dict[str, float] = {}
            for i in range(cfg.scale_jobs):
                j = run_job(chunk_texts(cfg.scale_job_chunks, f"leak{i}"))
                svc.store.view(j["job_id"], with_result=True)  # read the result, then drop the job
                svc.store.delete([j["job_id"]])
                if i + 1 == cfg.scale_warmup_jobs or i + 1 == cfg.scale_jobs or (i + 1) % 10 == 0:
                    s = {
                        "jobs": i + 1,
                        "rss_workers": rss_bytes(wp),
                        "rss_redis": rss_bytes(rp),
                        "redis_used_memory": r.info("memory")["used_memory"],
                        "dbsize": r.dbsize(),
                    }
                    samples.append(s)
                    if i + 1 == cfg.scale_warmup_jobs:
                        base, base_keys = s, set(r.scan_iter(count=1000))
            end = samples[-1]
            left = _leftovers(r, base_keys)
        finally:
            ctx.fake.configure(latency=cfg.latency, jitter=cfg.jitter)
    g_workers = end["rss_workers"] / base["rss_workers"] - 1
    g_redis = end["redis_used_memory"] / base["redis_used_memory"] - 1
    ok = g_workers <= GROWTH_LIMIT and g_redis <= GROWTH_LIMIT
    rows.append(
        Row(
            "7 scale",
            f"memory growth after {cfg.scale_jobs} jobs (from job {cfg.scale_warmup_jobs})",
            round(g_workers, 3),
            round(g_redis, 3),
            "ours: worker RSS; baseline col: Redis used_memory",
            None,
            f"≤ {GROWTH_LIMIT} both",
            ok,
            unit="fraction",
            note=f"workers {base['rss_workers'] / MB:.0f}→{end['rss_workers'] / MB:.0f} MB, Redis used "
            f"{base['redis_used_memory'] / MB:.1f}→{end['redis_used_memory'] / MB:.1f} MB",
            details={"samples": samples},
        )
    )
    rows.append(
        Row(
            "7 scale",
            "keys left after jobs deleted: new / without TTL",
            float(left["new_keys"]),
            float(left["n_without_ttl"]),
            "DBSIZE after warm-up",
            None,
            "0 without TTL",
            left["n_without_ttl"] == 0,
            note=f"DBSIZE {base['dbsize']}→{end['dbsize']}; left: "
            + ", ".join(
                f"{p} ×{c} (TTL {left['ttl_seconds_by_pattern'][p]} s)" for p, c in list(left["patterns"].items())[:3]
            )
            + (f"; no TTL: {', '.join(left['new_keys_without_ttl'][:5])}" if left["n_without_ttl"] else ""),
            details=left,
        )
    )
    return rows
