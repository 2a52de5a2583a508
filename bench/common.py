"""Shared pieces: configuration, result rows, process accounting (psutil), chunk text, fake server."""

from __future__ import annotations

import math
import os
import platform
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
FAKE_KEY = "sk-fake-bench"
LATENCY = 0.200
JITTER = 0.020
PAD_TOKENS = 500


@dataclass
class Config:
    """What to run. ``full()`` is `make bench`; ``quick()`` is `make bench-quick`; ``tiny()`` the smoke test."""

    name: str
    fanout_ws: tuple[int, ...] = (32, 64, 128)
    fanout_n_per_w: int = 10
    repeats: int = 3  # median of this many measured rounds (after one warm-up round)
    httpx_ws: tuple[int, ...] = (32, 64, 128)  # the SDK's default (httpx) client is slow: W values to try
    sequential_calls: int = 40
    overhead_chunks: int = 2000
    overhead_workers: int = 2
    overhead_concurrency: int = 8
    ratelimit_rpm: int = 1200
    ratelimit_seconds: float = 60.0
    scale_doc_bytes: int = 1_000_000
    scale_jobs: int = 100
    scale_job_chunks: int = 20
    scale_warmup_jobs: int = 10
    headofline_big: int = 1600
    latency: float = LATENCY
    jitter: float = JITTER
    pad_tokens: int = PAD_TOKENS

    @classmethod
    def full(cls) -> Config:
        return cls(name="full")

    @classmethod
    def quick(cls) -> Config:
        return cls(
            name="quick",
            fanout_ws=(64, 128),
            repeats=1,
            httpx_ws=(64,),
            sequential_calls=15,
            overhead_chunks=600,
            ratelimit_seconds=20.0,
            scale_doc_bytes=500_000,
            scale_jobs=30,
            scale_warmup_jobs=5,
            headofline_big=800,
        )

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            name="tiny",
            fanout_ws=(8,),
            fanout_n_per_w=3,
            repeats=1,
            httpx_ws=(8,),
            sequential_calls=3,
            overhead_chunks=60,
            overhead_workers=1,
            overhead_concurrency=4,
            ratelimit_rpm=600,
            ratelimit_seconds=3.0,
            scale_doc_bytes=20_000,
            scale_jobs=6,
            scale_job_chunks=4,
            scale_warmup_jobs=2,
            headofline_big=64,
            latency=0.05,
            jitter=0.005,
            pad_tokens=100,
        )


def layout(w: int) -> tuple[int, int]:
    """W concurrent provider calls in total → (worker processes, calls each): 1–3 processes."""
    if w <= 32:
        return 1, w
    if w % 3 == 0 and w >= 96:
        return 3, w // 3
    return 2, w // 2


#: The smallest batch (chunks per task) our workers get in the fan-out scenarios (HUMANIZER_BATCH_SIZE's
#: default).
BATCH = 16


def our_layout(w: int) -> tuple[int, int, dict[str, str]]:
    """The same W for our workers: (processes, batch tasks held each, settings). Each process has W/processes
    call slots (HUMANIZER_WORKER_CALLS) and holds twice as many chunks as it runs, so the next batch is
    ready when slots free up: 4 batches of half its slots (at least ``BATCH`` chunks; 32 slots, batches of
    16; 64 slots, batches of 32). The shape is the same at every W: the Celery work per batch (its message,
    its task, its bookkeeping) is paid per ``calls / 2`` chunks."""
    procs, calls = layout(w)
    batch = min(calls, max(BATCH, calls // 2))
    held = max(1, 2 * calls // batch)
    return procs, held, {"HUMANIZER_WORKER_CALLS": str(calls), "HUMANIZER_BATCH_SIZE": str(batch)}


@dataclass
class Row:
    """One line of the table. ``passed`` is None for informational rows and for rows not run."""

    scenario: str
    metric: str
    ours: float | None
    baseline: float | None
    baseline_name: str
    ratio: float | None
    target: str
    passed: bool | None
    unit: str = ""
    status: str = "ok"  # ok | not run | error
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def not_run(scenario: str, reason: str, target: str = "") -> Row:
    return Row(scenario, "", None, None, "", None, target, None, status="not run", note=reason)


def median(values: Iterable[float]) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def ideal_makespan(n: int, w: int, latency: float) -> float:
    return math.ceil(n / w) * latency


def chunk_texts(n: int, tag: str) -> list[str]:
    """n distinct chunks (~60 tokens each); distinct so no cache can answer them."""
    return [
        f"Chunk {tag}-{i:05d}. It is important to note that the team utilizes robust tools to leverage "
        f"synergies. Furthermore, the results were reviewed in detail, and the group concluded {i} items."
        for i in range(n)
    ]


# ---- process accounting ------------------------------------------------------------------------------
def _tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants — except for this (the client) process, whose children are the
    servers and workers we started and are accounted separately."""
    try:
        p = psutil.Process(pid)
        if pid == os.getpid():
            return [p]
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        for p in _tree(pid):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        for p in _tree(pid):
            with suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
    return total


class CpuMeter:
    """CPU seconds per named group of processes between ``start()`` and ``stop()``."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._start: dict[str, float] = {}
        self.result: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._start = {k: cpu_seconds(v) for k, v in self.groups.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.result = {k: round(cpu_seconds(v) - self._start[k], 3) for k, v in self.groups.items()}
        return self.result


class PeakRss:
    """Sample RSS of named process groups every ``interval`` seconds in a thread; keep the peaks."""

    def __init__(self, groups: dict[str, list[int]], interval: float = 0.1) -> None:
        self.groups = groups
        self.interval = interval
        self.peak: dict[str, int] = dict.fromkeys(groups, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="peak-rss")

    def _loop(self) -> None:
        while not self._stop.is_set():
            for k, pids in self.groups.items():
                self.peak[k] = max(self.peak[k], rss_bytes(pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# ---- services ------------------------------------------------------------------------------------------
@dataclass
class Context:
    cfg: Config
    fake: Any  # FakeLLMProcess
    work_dir: Path
    results_dir: Path = RESULTS_DIR
    shared: dict[str, Any] = field(default_factory=dict)  # results one scenario hands to another


def stack_env(fake_url: str, **extra: str) -> dict[str, str]:
    return {
        "HUMANIZER_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake_url,
        "OPENAI_API_KEY": FAKE_KEY,
        "OPENAI_MODEL": "fake-model",
        "OPENAI_TIMEOUT": "30",
        "CELERY_TASK_MAX_RETRIES": "4",
        "CELERY_TASK_RETRY_DELAY": "0.5",
        "HUMANIZER_CHUNK_CACHE_TTL_SECONDS": "0",
        "HUMANIZER_KEY_PREFIX": "hzb",
        "LOG_LEVEL": "WARNING",
        # like the baselines, one call per chunk: the fan-out is measured, not the second pass (README: ~3 ms
        # of worker CPU per chunk to decide, tests/integration/test_second_pass.py for its calls)
        "HUMANIZER_SECOND_PASS": "off",
        **extra,
    }


@contextmanager
def local_stack(ctx: Context, workers: int, concurrency: int, **env: str) -> Iterator[Any]:
    from humanizer.config import reset_settings_cache
    from humanizer.local.stack import LocalStack

    work = ctx.work_dir / f"stack-{time.monotonic_ns()}"
    stack = LocalStack(workers, concurrency, env=stack_env(ctx.fake.url, **env), work_dir=work)
    try:
        yield stack.start()
    finally:
        stack.stop()
        reset_settings_cache()


def process_groups(ctx: Context, stack: Any) -> dict[str, list[int]]:
    """The processes whose CPU a scenario accounts for, by role."""
    return {
        "client": [os.getpid()],
        "workers": worker_pids(stack),
        "redis": [stack.redis.proc.pid],
        "fake_llm": [ctx.fake.proc.pid],
    }


def worker_pids(stack: Any) -> list[int]:
    return [w.proc.pid for w in stack.pool.workers if w.proc is not None]


def machine() -> dict[str, Any]:
    import celery
    import kombu
    import openai
    import redis

    vm = psutil.virtual_memory()
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(vm.total / 2**30, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "openai": openai.__version__,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def fake_requests_since(fake: Any, t0: float | None = None) -> list[dict[str, Any]]:
    reqs: list[dict[str, Any]] = fake.stats()["requests"]
    return [r for r in reqs if t0 is None or r["t"] >= t0]
