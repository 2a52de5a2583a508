"""``humanizer eval DIR``: run a folder of documents through the configured provider and measure the result.

Every document goes through the one submission path (``jobs.submit.submit_job``, as ``humanizer run``
does) with verification on; all are submitted first, so they run side by side as jobs do in the service,
then each is followed to its end. Per document and in total: the AI-tell score of the prose before and
after (``verification/tells.py``), the verification result (chunks failed, facts missing), the length
ratio (rewritten / original characters of the checked chunks), tokens, estimated cost, second passes and
the time from submission to the end. With a real key and base URL it is how to judge a model and a
prompt; the totals' tell scores treat all documents' prose as one text (their points over their words).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from humanizer.jobs.models import JobRequest, JobView
from humanizer.verification.tells import FLAG_SCORE, MIN_WORDS, SCALE

DEFAULT_SUFFIXES = (".md", ".markdown", ".txt")


class DocumentResult(BaseModel):
    document: str
    job_id: str
    status: str
    error: str | None = None
    chunks: int = 0
    tell_before: float | None = None
    tell_after: float | None = None
    verification_passed: bool | None = None
    chunks_checked: int = 0
    chunks_failed: int = 0
    missing: dict[str, int] = Field(default_factory=dict)  # fact category -> missing in all chunks
    length_ratio: float | None = None
    original_chars: int = 0
    rewritten_chars: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    second_pass_calls: int = 0
    second_pass_kept: int = 0
    seconds: float | None = None
    # the tell detector's raw figures, to pool documents (not shown in the table)
    tell_points_before: float = 0.0
    tell_points_after: float = 0.0
    tell_words_before: int = 0
    tell_words_after: int = 0


class Totals(BaseModel):
    documents: int
    succeeded: int
    verification_passed: int
    tell_before: float | None
    tell_after: float | None
    tell_before_mean: float | None
    tell_after_mean: float | None
    chunks: int
    chunks_failed: int
    missing: dict[str, int]
    length_ratio: float | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    second_pass_calls: int
    second_pass_kept: int
    seconds: float  # wall time of the whole run


class EvalReport(BaseModel):
    provider: str
    model: str
    style: str
    flag_score: float = FLAG_SCORE
    documents: list[DocumentResult]
    total: Totals


def find_documents(directory: Path, patterns: Sequence[str] = ()) -> list[Path]:
    """The documents of ``directory`` (not recursive, hidden files skipped), sorted by name: files
    matching ``patterns`` (globs), or with a text suffix (.md, .markdown, .txt)."""
    if patterns:
        found = {p for pattern in patterns for p in directory.glob(pattern)}
    else:
        found = {p for p in directory.iterdir() if p.suffix.lower() in DEFAULT_SUFFIXES}
    return sorted((p for p in found if p.is_file() and not p.name.startswith(".")), key=lambda p: p.name)


def result_of(name: str, view: JobView) -> DocumentResult:
    report = view.verification or {}
    doc = report.get("document") or {}
    tells = report.get("tells") or {}
    before, after = tells.get("before") or {}, tells.get("after") or {}
    seconds = None if view.finished_at is None else round(view.finished_at - view.created_at, 3)
    return DocumentResult(
        document=name, job_id=view.job_id, status=view.status.value, error=view.error,
        chunks=view.progress.total,
        tell_before=before.get("score"), tell_after=after.get("score"),
        verification_passed=report.get("passed") if report else None,
        chunks_checked=int(report.get("chunks_checked", 0)), chunks_failed=int(report.get("chunks_failed", 0)),
        missing={k: int(v) for k, v in (report.get("missing_totals") or {}).items() if v},
        length_ratio=doc.get("length_ratio"),
        original_chars=int(doc.get("original_chars", 0)), rewritten_chars=int(doc.get("rewritten_chars", 0)),
        tokens_in=view.tokens_in, tokens_out=view.tokens_out, cost_usd=round(view.cost_usd, 6),
        second_pass_calls=view.second_pass.calls if view.second_pass else 0,
        second_pass_kept=view.second_pass.kept if view.second_pass else 0,
        seconds=seconds,
        tell_points_before=float(before.get("points", 0.0)), tell_points_after=float(after.get("points", 0.0)),
        tell_words_before=int(before.get("words", 0)), tell_words_after=int(after.get("words", 0)),
    )


def pooled_score(points: float, words: int) -> float | None:
    """The detector's score of several texts taken as one (``verification/tells.score_stats``)."""
    if not words:
        return None
    return round(100 * (1 - math.exp(-(points * 100 / max(words, MIN_WORDS)) / SCALE)), 1)


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 1) if known else None


def totals(results: Sequence[DocumentResult], seconds: float) -> Totals:
    missing: dict[str, int] = {}
    for r in results:
        for k, v in r.missing.items():
            missing[k] = missing.get(k, 0) + v
    original = sum(r.original_chars for r in results)
    return Totals(
        documents=len(results),
        succeeded=sum(r.status == "SUCCESS" for r in results),
        verification_passed=sum(bool(r.verification_passed) for r in results),
        tell_before=pooled_score(sum(r.tell_points_before for r in results), sum(r.tell_words_before for r in results)),
        tell_after=pooled_score(sum(r.tell_points_after for r in results), sum(r.tell_words_after for r in results)),
        tell_before_mean=_mean(r.tell_before for r in results),
        tell_after_mean=_mean(r.tell_after for r in results),
        chunks=sum(r.chunks for r in results),
        chunks_failed=sum(r.chunks_failed for r in results),
        missing=missing,
        length_ratio=round(sum(r.rewritten_chars for r in results) / original, 4) if original else None,
        tokens_in=sum(r.tokens_in for r in results),
        tokens_out=sum(r.tokens_out for r in results),
        cost_usd=round(sum(r.cost_usd for r in results), 6),
        second_pass_calls=sum(r.second_pass_calls for r in results),
        second_pass_kept=sum(r.second_pass_kept for r in results),
        seconds=round(seconds, 3),
    )


def run_eval(
    documents: Sequence[tuple[str, str]],
    options: dict[str, Any],
    timeout: float | None = None,
    on_submitted: Callable[[str, str, int], None] | None = None,
    on_done: Callable[[DocumentResult], None] | None = None,
) -> tuple[EvalReport, dict[str, str]]:
    """Submit every (name, text) with ``options`` (JobRequest fields), wait for each; the report and the
    rewritten texts by name. Raises what ``submit_job`` raises (SubmissionError, RedisUnavailable)."""
    from humanizer.config import get_settings
    from humanizer.jobs.submit import submit_job
    from humanizer.orchestration import OrchestrationService

    settings = get_settings()
    started = time.monotonic()
    submitted: list[tuple[str, str]] = []
    for name, text in documents:
        job = submit_job(JobRequest(text=text, verify=True, **options), settings)
        submitted.append((name, job.job_id))
        if on_submitted:
            on_submitted(name, job.job_id, job.total_chunks)
    svc = OrchestrationService(settings)
    results: list[DocumentResult] = []
    texts: dict[str, str] = {}
    for name, job_id in submitted:
        left = None if timeout is None else max(1.0, timeout - (time.monotonic() - started))
        view = svc.wait(job_id, timeout=left, poll=0.1)
        result = result_of(name, view)
        results.append(result)
        if view.humanized_text is not None:
            texts[name] = view.humanized_text
        if on_done:
            on_done(result)
    first = svc.view(submitted[0][1]) if submitted else None
    report = EvalReport(
        provider=first.provider if first else str(options.get("provider") or settings.provider),
        model=first.model if first else "",
        style=first.style if first else "",
        documents=results,
        total=totals(results, time.monotonic() - started),
    )
    return report, texts


def public(report: EvalReport) -> dict[str, Any]:
    """The report as ``--json`` prints it (the detector's raw pooling figures left out)."""
    raw = {"tell_points_before", "tell_points_after", "tell_words_before", "tell_words_after"}
    data = report.model_dump(mode="json")
    data["documents"] = [{k: v for k, v in d.items() if k not in raw} for d in data["documents"]]
    return data


def render_table(report: EvalReport) -> Any:
    """A rich table: one row per document and a total row."""
    from rich.table import Table

    def num(value: float | None, fmt: str = "{:.1f}") -> str:
        return "–" if value is None else fmt.format(value)

    def verdict(passed: bool | None, failed: int, checked: int, missing: dict[str, int]) -> str:
        if passed is None:
            return "–"
        shown = "PASS" if passed else f"FAIL {failed}/{checked}"
        if missing:
            shown += " (" + ", ".join(f"{v} {k}" for k, v in sorted(missing.items())) + " missing)"
        return shown

    table = Table(
        title=f"humanizer eval: provider {report.provider}" + (f" ({report.model})" if report.model else "")
        + f", style {report.style}; AI-tell score 0-100, {report.flag_score:g}+ reads machine-written",
        show_footer=True,
    )
    t = report.total
    columns = [
        ("document", f"total ({t.documents})", "left"),
        ("tells before", num(t.tell_before), "right"),
        ("tells after", num(t.tell_after), "right"),
        ("verification", f"{t.verification_passed}/{t.documents} passed", "left"),
        ("length", num(t.length_ratio, "{:.2f}"), "right"),
        ("tokens in/out", f"{t.tokens_in:,}/{t.tokens_out:,}", "right"),
        ("cost $", f"{t.cost_usd:.4f}", "right"),
        ("2nd pass", f"{t.second_pass_calls} ({t.second_pass_kept} kept)", "right"),
        ("seconds", f"{t.seconds:.1f}", "right"),
    ]
    for header, footer, justify in columns:
        table.add_column(header, footer=footer, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in report.documents:
        name = r.document if r.status == "SUCCESS" else f"{r.document} ({r.status}: {r.error or 'no result'})"
        table.add_row(
            name, num(r.tell_before), num(r.tell_after),
            verdict(r.verification_passed, r.chunks_failed, r.chunks_checked, r.missing),
            num(r.length_ratio, "{:.2f}"), f"{r.tokens_in:,}/{r.tokens_out:,}", f"{r.cost_usd:.4f}",
            f"{r.second_pass_calls} ({r.second_pass_kept} kept)", num(r.seconds),
        )
    return table
