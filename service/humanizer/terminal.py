"""What the CLI and the demo print about a job: live progress, the summary line, per-target lines, the
verification report."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from humanizer.jobs.models import JobView

console = Console(stderr=True)


def follow(job_id: str, quiet: bool = False) -> JobView:
    """Show a live progress bar (chunks done/total, rate, ETA) until the job ends."""
    from humanizer.orchestration import OrchestrationService

    svc = OrchestrationService()
    if quiet:
        return svc.wait(job_id)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("rewriting", total=None, rate="")

        def update(view: JobView) -> None:
            done = view.progress.completed + view.progress.failed
            elapsed = max(1e-6, time.monotonic() - started)
            progress.update(
                task,
                total=view.progress.total or None,
                completed=done,
                description=view.phase or view.status.value.lower(),
                rate=f"{done / elapsed:5.1f} chunks/s",
            )

        view = svc.wait(job_id, on_update=update)
        update(view)
    return view


def print_summary(view: JobView, seconds: float) -> None:
    p = view.progress
    console.print(
        f"[bold]{view.status.value}[/] job {view.job_id}: {p.completed}/{p.total} chunks, "
        f"{p.failed} failed, {view.retries} retries, {seconds:.1f} s, "
        f"tokens in/out {view.tokens_in:,}/{view.tokens_out:,}, provider {view.provider}"
        + (f" ({view.model})" if view.model else "")
        + (f", AI-tell score {view.ai_tell_score.before:.1f} → {view.ai_tell_score.after:.1f}"
           if view.ai_tell_score else "")
        + (f", second passes {view.second_pass.calls} ({view.second_pass.kept} kept, "
           f"{view.second_pass.over_budget} over budget)" if view.second_pass else ""),
        highlight=False,
    )
    for line in target_lines(view):
        console.print(line, highlight=False)
    if view.error:
        console.print(f"[red]{view.error}[/]", highlight=False)


def target_lines(view: JobView) -> list[str]:
    """One line per target of the job's fallback chain (none for a job without fallback targets)."""
    lines = []
    for t in view.targets or []:
        errors = ", ".join(f"{n} {k}" for k, n in t.errors.items()) or "no errors"
        latency = f"{t.latency_seconds:.3f} s/call" if t.latency_seconds is not None else "no calls"
        lines.append(
            f"  target {t.name} ({t.provider}{'/' + t.model if t.model else ''}): {t.chunks} chunks, {t.calls} calls, "
            f"{errors}, {t.skipped} skipped (breaker open), {t.fallovers} fell over, tokens in/out "
            f"{t.tokens_in:,}/{t.tokens_out:,}, ${t.cost_usd:.4f}, {latency}"
            + (f", {t.second_passes} second passes" if t.second_passes else "")
        )
    return lines


def print_report(view: JobView) -> None:
    if not view.verification:
        return
    from humanizer.verification import VerificationReport, render_report

    console.print(render_report(VerificationReport.model_validate(view.verification)))
