"""A compact, readable rendering of a :class:`VerificationReport` for the CLI and the demo."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from humanizer.verification.check import ChunkReport, VerificationReport


def render_report(report: VerificationReport, max_issues: int = 10) -> Group:
    """PASS/FAIL, chunk counts, what went missing and the first ``max_issues`` issues by chunk."""
    status = Text("PASS", style="bold green") if report.passed else Text("FAIL", style="bold red")
    head = Text.assemble(
        "Verification ",
        status,
        f": {report.chunks_checked} of {report.chunks_total} chunks checked "
        f"({report.chunks_skipped} passthrough), {report.chunks_failed} failed",
    )
    parts: list[Text | Table] = [head]
    doc = report.document
    if doc is not None:
        parts.append(
            Text(
                f"Document: length ratio {_num(doc.length_ratio)}, "
                f"content overlap {_num(doc.content_overlap)}"
                + ("" if doc.passed else f", {len(doc.issues)} issue(s)"),
                style="dim" if doc.passed else "red",
            )
        )
    tells = report.tells
    if tells is not None:
        parts.append(
            Text(
                f"AI tells: {tells.before.score:.1f} before → {tells.after.score:.1f} after (0-100; "
                f"{tells.flag_score:g}+ reads machine-written); chunks flagged {tells.chunks_flagged_before} → "
                f"{tells.chunks_flagged_after} of {tells.chunks_scored}"
                + (f"; most left: {', '.join(h.id for h in tells.after.hits[:3])}" if tells.after.hits else ""),
                style="yellow" if tells.after.flagged else "dim",
            )
        )
    if report.targets:
        parts.append(Text(
            "Served by: " + ", ".join(
                f"{t.get('name')} {t.get('chunks', 0)} chunks ({t.get('calls', 0)} calls, "
                f"{sum((t.get('errors') or {}).values())} failed)" for t in report.targets
            ),
            style="dim",
        ))
    missing = {k: v for k, v in report.missing_totals.items() if v}
    if missing:
        parts.append(Text("Missing: " + ", ".join(f"{v} {k}" for k, v in missing.items()), style="yellow"))

    rows = list(_issue_rows(report))
    if rows:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("chunk", justify="right", no_wrap=True)
        table.add_column("issue", overflow="fold")
        for where, issue in rows[:max_issues]:
            table.add_row(where, issue)
        parts.append(table)
        if len(rows) > max_issues:
            parts.append(Text(f"… {len(rows) - max_issues} more issue(s)", style="dim"))
    return Group(*parts)


def render_text(report: VerificationReport, max_issues: int = 10) -> str:
    """The same summary as plain text (logs, tests)."""
    console = Console(width=100, color_system=None, record=True, file=io.StringIO())
    console.print(render_report(report, max_issues))
    return console.export_text()


def _issue_rows(report: VerificationReport) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    chunks: list[ChunkReport] = list(report.failed_chunks)
    if report.document is not None and not report.document.passed:
        chunks.append(report.document)
    for chunk in chunks:
        where = "doc" if chunk.index is None else str(chunk.index)
        rows.extend((where, issue) for issue in chunk.issues)
    return rows


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
