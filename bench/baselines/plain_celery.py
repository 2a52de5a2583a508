"""The plain-Celery baseline: a tiny separate Celery app, Celery defaults, nothing of ours.

Tasks:
- ``bench.call(text)``: the same HTTP call our worker makes (``chat.completions.create`` through the
  official SDK against the same fake server; one ``openai.OpenAI`` client per worker thread);
- ``bench.noop(i)``: nothing (scenario 4's plain ``group``);
- ``bench.collect(results)``: the chord callback (counts the header results).

The client waits with ``AsyncResult.get(follow_parents=False)`` — the default ``get()`` re-checks every
header result per message (quadratic: +6-8 s on a 2,000-task chord on this machine kind), which would flatter us.

Workers: ``python -m celery -A bench.baselines.plain_celery worker`` with ``BENCH_BROKER_URL`` and
``BENCH_LLM_URL`` set; ``PlainWorkers`` starts/stops them as processes like our ``WorkerPool``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery, chord, group, shared_task

QUEUE = "bench-plain"
REPO = Path(__file__).resolve().parents[2]

app = Celery("bench_plain")
_local = threading.local()


def configure(broker_url: str) -> Celery:
    """A new app for ``broker_url`` (the tasks below are shared tasks), current and default; the old one is
    closed, so nothing made for an earlier URL is reused (a result backend left pointing at a stopped
    Redis makes ``get()`` hang retrying)."""
    global app
    app.close()
    app = Celery("bench_plain", set_as_current=True)
    app.conf.update(
        broker_url=broker_url,
        result_backend=broker_url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    app.set_default()
    return app


if os.environ.get("BENCH_BROKER_URL"):
    configure(os.environ["BENCH_BROKER_URL"])


def _client() -> Any:
    client = getattr(_local, "client", None)
    if client is None:
        import openai

        client = openai.OpenAI(
            base_url=os.environ["BENCH_LLM_URL"],
            api_key=os.environ.get("BENCH_LLM_KEY", "x"),
            max_retries=0,
            timeout=30.0,
        )
        _local.client = client
    return client


@shared_task(name="bench.call")
def call(text: str) -> int:
    resp = _client().chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": text}], max_tokens=1024
    )
    return len(resp.choices[0].message.content or "")


@shared_task(name="bench.noop")
def noop(i: int) -> int:
    return i


@shared_task(name="bench.collect")
def collect(results: list[int]) -> int:
    return len(results)


# ---- processes --------------------------------------------------------------------------------------------
class PlainWorkers:
    def __init__(
        self, count: int, concurrency: int, broker_url: str, llm_url: str, log_dir: Path, llm_key: str = "x"
    ) -> None:
        self.count, self.concurrency = count, concurrency
        self.env = {
            **os.environ,
            "BENCH_BROKER_URL": broker_url,
            "BENCH_LLM_URL": llm_url,
            "BENCH_LLM_KEY": llm_key,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        }
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self, timeout: float = 60.0) -> PlainWorkers:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            log = open(self.log_dir / f"plain{i}.log", "ab")  # noqa: SIM115 - owned by the child
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "bench.baselines.plain_celery",
                        "worker",
                        "--pool",
                        "threads",
                        "--concurrency",
                        str(self.concurrency),
                        "--queues",
                        QUEUE,
                        "--hostname",
                        f"plain{i}@%h",
                        "--loglevel",
                        "WARNING",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                    ],
                    env=self.env,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"plain Celery worker exited early; see {self.log_dir}")
            if len(app.control.ping(timeout=0.5) or []) >= self.count:
                return self
        raise TimeoutError(f"plain Celery workers not ready after {timeout}s; see {self.log_dir}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        self.procs.clear()

    def __enter__(self) -> PlainWorkers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- client side --------------------------------------------------------------------------------------------
def run_chord(texts: list[str], timeout: float = 300.0) -> dict[str, float]:
    """Send ``chord(group(call(t) for t), collect())`` and wait for the callback's result."""
    t0 = time.perf_counter()
    res = chord(group(call.s(t) for t in texts), collect.s()).apply_async()
    t_sent = time.perf_counter()
    count = res.get(timeout=timeout, interval=0.01, follow_parents=False)
    t1 = time.perf_counter()
    res.forget()
    if count != len(texts):
        raise RuntimeError(f"plain chord returned {count} results for {len(texts)} tasks")
    return {"makespan": t1 - t0, "publish_seconds": t_sent - t0}


def run_group(n: int, timeout: float = 300.0) -> dict[str, float]:
    """Send ``group(noop(i) for i)`` and wait for every result."""
    t0 = time.perf_counter()
    res = group(noop.s(i) for i in range(n)).apply_async()
    t_sent = time.perf_counter()
    out = res.get(timeout=timeout, interval=0.01)
    t1 = time.perf_counter()
    res.forget()
    if len(out) != n:
        raise RuntimeError(f"plain group returned {len(out)} results for {n} tasks")
    return {"makespan": t1 - t0, "publish_seconds": t_sent - t0}
