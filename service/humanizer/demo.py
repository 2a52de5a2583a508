"""``make demo``: the whole pipeline on this machine, no API key, no network.

Starts an embedded Redis and real Celery worker processes, submits the sample document through the
public submission path, shows live progress, then prints a before/after excerpt, the verification
report and a summary, and writes the full result to a file. Every process it started is stopped on
exit, Ctrl-C included.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from humanizer.jobs.models import JobRequest, JobStatus
from humanizer.jobs.submit import submit_job
from humanizer.local.stack import LocalStack
from humanizer.logging import configure_logging
from humanizer.terminal import follow, print_report, print_summary

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "remote-work-report.md"
console = Console(stderr=True)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _excerpt(text: str, paragraphs: int = 2) -> str:
    prose = [p for p in text.split("\n\n") if p.strip() and not p.lstrip().startswith(("#", "```", "|", "-"))]
    return "\n\n".join(prose[:paragraphs])


def run_demo(workers: int = 2, concurrency: int = 8, style: str = "casual", out_path: Path | None = None,
             sample: Path = SAMPLE, simulated_latency: float = 0.25, chunk_tokens: int = 150) -> int:
    signal.signal(signal.SIGTERM, _sigterm)
    configure_logging("WARNING", "console")
    text = sample.read_text(encoding="utf-8")
    console.print(Panel.fit(
        f"[bold]Humanizer demo[/]\n"
        f"document: {sample.name} ({len(text.split()):,} words)\n"
        f"stack: embedded Redis + {workers} Celery worker processes × {concurrency} threads\n"
        f"provider: [bold]offline[/] — a deterministic local rewriter (phrase and\n"
        f"sentence edits; no LLM, no network, no key), {simulated_latency:g} s simulated latency\n"
        f"per chunk so the fan-out is visible.\n"
        f"Real model: HUMANIZER_PROVIDER=openai and OPENAI_API_KEY.",
    ))
    env = {
        "HUMANIZER_PROVIDER": "offline",
        "HUMANIZER_OFFLINE_LATENCY": str(simulated_latency),
        "LOG_LEVEL": "INFO",
    }
    started = time.monotonic()
    try:
        with LocalStack(workers=workers, concurrency=concurrency, env=env) as stack:
            console.print(f"Redis on 127.0.0.1:{stack.redis.port}; workers ready in {time.monotonic() - started:.1f} s")
            t0 = time.monotonic()
            job = submit_job(JobRequest(text=text, style=style, verify=True, chunk_max_tokens=chunk_tokens))
            console.print(f"job [bold]{job.job_id}[/]: {job.total_chunks} chunks ({job.model_chunks} to rewrite, "
                          f"{job.total_chunks - job.model_chunks} passed through: code, tables, headings, lists)")
            view = follow(job.job_id)
            elapsed = time.monotonic() - t0
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted: every process the demo started has been stopped[/]")
        return 130
    if view.status != JobStatus.SUCCESS or view.humanized_text is None:
        print_summary(view, elapsed)
        return 1
    table = Table(title="before → after (first paragraphs)", show_lines=True, expand=True)
    table.add_column("original (AI-written)", ratio=1)
    table.add_column(f"rewritten ({style})", ratio=1)
    table.add_row(_excerpt(text), _excerpt(view.humanized_text))
    console.print(table)
    print_report(view)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(view.humanized_text, encoding="utf-8")
        console.print(f"full rewritten document: [bold]{out_path}[/]")
    print_summary(view, elapsed)
    console.print(f"demo finished in {time.monotonic() - started:.1f} s; all processes stopped")
    return 0
