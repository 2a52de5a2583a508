"""The table printed by ``make bench``, the JSON under bench/results/ and the efficiency plot."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.common import Row

COLUMNS = ("scenario", "metric", "ours", "baseline", "ratio", "target", "pass")


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def verdict(row: Row) -> str:
    if row.status != "ok":
        return row.status.upper()
    if row.passed is None:
        return "info"
    return "PASS" if row.passed else "FAIL"


def table(rows: list[Row], markdown: bool = False) -> str:
    cells = [
        [
            r.scenario,
            r.metric,
            _fmt(r.ours) + (f" {r.unit}" if r.unit and r.ours is not None else ""),
            _fmt(r.baseline) + (f" ({r.baseline_name})" if r.baseline_name else ""),
            _fmt(r.ratio),
            r.target,
            verdict(r),
        ]
        for r in rows
    ]
    if markdown:
        out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
        notes = [f"- {r.scenario} / {r.metric or r.status}: {r.note}" for r in rows if r.note]
        return "\n".join(out + (["", *notes] if notes else []))
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(COLUMNS)]
    line = "  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    notes = [f"  {r.scenario} / {r.metric or r.status}: {r.note}" for r in rows if r.note]
    return "\n".join(out + (["", "notes:", *notes] if notes else []))


def write_json(results_dir: Path, doc: dict[str, Any]) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = results_dir / f"bench-{doc['meta']['config']['name']}-{stamp}.json"
    text = json.dumps(doc, indent=2, sort_keys=False, default=str)
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    return path


LABELS = {
    "ours": "ours (Celery chord via OrchestrationService)",
    "plain_celery": "plain Celery chord",
    "asyncio_aiohttp": "asyncio + AsyncOpenAI (aiohttp)",
    "asyncio_httpx": "asyncio + AsyncOpenAI (httpx)",
    "sdk_ceiling": "SDK calls alone, same processes (ceiling)",
}
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f")


def plot_svg(results_dir: Path, curve: dict[int, dict[str, float]]) -> Path:
    """The same plot as hand-written SVG, for an environment without matplotlib."""
    ws = sorted(curve)
    width, height, left, bottom, top, right = 640, 380, 60, 50, 30, 250
    pw, ph = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (pw * i / max(1, len(ws) - 1) if len(ws) > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph * (1 - min(v, 1.1) / 1.1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">Fan-out efficiency vs W (N = 10·W)</text>',
    ]
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
            f'<text x="{left - 30}" y="{y(v) + 4:.1f}">{v:.2f}</text>'
        )
    for i, w in enumerate(ws):
        parts.append(f'<text x="{x(i) - 8:.1f}" y="{top + ph + 18}">{w}</text>')
    for k, (key, label) in enumerate(LABELS.items()):
        pts = [(i, curve[w][key]) for i, w in enumerate(ws) if key in curve[w]]
        if not pts:
            continue
        c = COLOURS[k]
        parts.append(
            f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
            + " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in pts)
            + '"/>'
        )
        parts += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{c}"/>' for i, v in pts]
        parts.append(f'<text x="{left + pw + 15}" y="{top + 15 + 18 * k}" fill="{c}">{label}</text>')
    parts.append(f'<text x="{left + pw / 2 - 20:.1f}" y="{height - 10}">W</text></svg>')
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "efficiency.svg"
    path.write_text("\n".join(parts))
    return path


def plot_efficiency(results_dir: Path, curve: dict[int, dict[str, float]], latency: float) -> Path | None:
    """Efficiency vs W for ours, plain Celery and asyncio: PNG via matplotlib, else SVG by hand."""
    if not curve:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return plot_svg(results_dir, curve)
    ws = sorted(curve)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key, label in LABELS.items():
        pts = [(w, curve[w][key]) for w in ws if key in curve[w]]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    for w, t in ((64, 0.92), (128, 0.85)):
        if w in ws:
            ax.scatter([w], [t], marker="_", s=400, color="red", zorder=3)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ws, [str(w) for w in ws])
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("W (concurrent provider calls in total); N = 10·W chunks")
    ax.set_ylabel(f"efficiency = ceil(N/W)·{latency * 1000:.0f} ms / makespan")
    ax.set_title("Fan-out efficiency (red bars: targets)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "efficiency.png"
    fig.savefig(path)
    plt.close(fig)
    return path
