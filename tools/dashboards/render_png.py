"""Render the Grafana dashboards to PNG from a real Prometheus' ``query_range`` answers (no Grafana).

Each panel's queries are sent to Prometheus with the dashboard's variables set the way a first look
in Grafana sets them (the release's namespace, every pod, provider and outcome), and the answers are
drawn with matplotlib, one subplot per panel. The node tier's monitoring test
(tests/node/test_monitoring.py) does this after its real jobs when ``HUMANIZER_DASHBOARD_PNG_DIR`` is
set; ``make dashboards-png`` runs it and writes docs/img/dashboard-*.png. By hand, against any
Prometheus that scrapes a release:

    uv run python tools/dashboards/render_png.py --prometheus http://PROM:9090 --minutes 15 --out docs/img
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "charts" / "humanizer" / "dashboards"


def substitute(expr: str, seconds: float, namespace: str = "humanizer") -> str:
    """Grafana's variables as a user's first look sets them: everything of the release's namespace."""
    rng = f"{max(60, int(seconds))}s"
    return (expr.replace("$__rate_interval", "30s").replace("$__range", rng)
            .replace("$namespace", namespace).replace("$pod", ".*").replace("$provider", ".*")
            .replace("$outcome", ".*").replace("$job_id", ".*"))  # fmt: skip


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{query}", timeout=30) as resp:
        body = json.loads(resp.read())
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return list(body["data"]["result"])


def fetch(prometheus: str, dashboard: dict[str, Any], start: float, end: float, step: float = 5.0,
          namespace: str = "humanizer") -> list[list[list[dict[str, Any]]]]:
    """Per panel (with targets), per target: the query_range result."""
    return [
        [query_range(prometheus, substitute(t["expr"], end - start, namespace), start, end, step)
         for t in panel["targets"]]
        for panel in dashboard["panels"] if panel.get("targets")
    ]  # fmt: skip


def draw(dashboard: dict[str, Any], answers: list[list[list[dict[str, Any]]]], start: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in dashboard["panels"] if p.get("targets")]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    plt.style.use("dark_background")
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6.2, rows * 3.0), squeeze=False)
    for ax, panel, results in zip(axes.flat, panels, answers, strict=False):
        ax.set_title(panel.get("title", ""), fontsize=10, loc="left")
        ax.tick_params(labelsize=7)
        drawn = False
        for target, series in zip(panel["targets"], results, strict=True):
            legend = target.get("legendFormat", "")
            for s in series:
                points = [(float(t) - start, float(v)) for t, v in s["values"] if not math.isnan(float(v))]
                if not points:
                    continue
                labels = s["metric"]
                name = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m, d=labels: d.get(m.group(1), ""), legend) or (
                    ",".join(labels.values()) or "value")
                if panel.get("type") in ("stat", "bargauge"):
                    last = points[-1][1]
                    ax.barh(name, last)
                    ax.text(last, name, f" {last:.3g}", va="center", fontsize=8)
                else:
                    ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.2)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no data in this run", ha="center", va="center", transform=ax.transAxes, color="grey")
        elif panel.get("type") not in ("stat", "bargauge"):
            ax.legend(fontsize=6, loc="upper left")
            ax.set_xlabel("seconds", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{dashboard.get('title', '')} — Prometheus query_range over a real run", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def render_all(prometheus: str, start: float, end: float, out: Path, namespace: str = "humanizer") -> list[Path]:
    written = []
    for source in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(source.read_text())
        path = out / f"dashboard-{source.stem.replace('job-', '')}.png"
        draw(dashboard, fetch(prometheus, dashboard, start, end, namespace=namespace), start, path)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--minutes", type=float, default=15.0, help="time range ending now")
    parser.add_argument("--namespace", default="humanizer")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    end = time.time()
    for path in render_all(args.prometheus, end - args.minutes * 60, end, args.out, args.namespace):
        print(path)


if __name__ == "__main__":
    main()
