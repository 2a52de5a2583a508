"""Render the Grafana dashboards to PNG from real data, without Grafana or Prometheus.

It runs a real workload on this machine (embedded Redis, real worker processes, the HTTP API, the fake
OpenAI server with a few injected 429s and one permanent 400), scrapes every ``/metrics`` endpoint
every ``--step`` seconds like Prometheus would, evaluates each panel's PromQL with a small evaluator
for the forms our dashboards use (``sum by``/``max``/``count`` over ``rate``/``increase``/gauges, and
``histogram_quantile``), and draws the panels with matplotlib.

Series a real cluster gets from elsewhere are derived the way their exporters would: ``up`` from the
scrape succeeding, ``redis_up``/``redis_memory_used_bytes`` from Redis ``INFO``. The autoscaler's
series need the operator on a cluster and are drawn as "no data here".

    uv run python tools/dashboards/render_png.py --seconds 90 --out docs/img
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "charts" / "humanizer" / "dashboards"
RATE_WINDOW = 20.0

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrapes:
    times: list[float] = field(default_factory=list)
    series: dict[tuple[str, Labels], dict[int, float]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, t: float, samples: list[tuple[str, dict[str, str], float]]) -> None:
        i = len(self.times)
        self.times.append(t)
        for name, labels, value in samples:
            self.series[(name, tuple(sorted(labels.items())))][i] = value


def scrape(url: str, pod: str, job: str) -> list[tuple[str, dict[str, str], float]]:
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return [("up", {"pod": pod, "job": job}, 0.0)]
    out = [("up", {"pod": pod, "job": job}, 1.0)]
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append((s.name, {**s.labels, "pod": pod, "job": job}, float(s.value)))
    return out


# ---- a small PromQL evaluator -------------------------------------------------------------------
_SEL = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<m>[^}]*)\})?(?:\[(?P<w>[^\]]+)\])?$")


def _matchers(text: str | None) -> list[tuple[str, str, str]]:
    out = []
    for part in re.findall(r'(\w+)\s*(=~|!=|=)\s*"([^"]*)"', text or ""):
        if "$" not in part[2]:
            out.append(part)
    return out


def _match(labels: Labels, matchers: list[tuple[str, str, str]]) -> bool:
    d = dict(labels)
    for k, op, v in matchers:
        got = d.get(k, "")
        if (op == "=" and got != v) or (op == "!=" and got == v) or (op == "=~" and not re.fullmatch(v, got)):
            return False
    return True


def _split_args(text: str) -> list[str]:
    depth, cur, parts = 0, "", []
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += (ch in "({[" and 1) or (-1 if ch in ")}]" else 0)
        cur += ch
    parts.append(cur.strip())
    return parts


def evaluate(expr: str, data: Scrapes) -> dict[Labels, list[float]]:
    """Series (by labels) of values at each scrape time; NaN where undefined."""
    expr = expr.replace("$__rate_interval", f"{int(RATE_WINDOW)}s").replace("$__range", "range").strip()
    factor = 1.0
    m = re.match(r"^(.*)\*\s*([\d.]+)$", expr)
    if m:
        expr, factor = m.group(1).strip(), float(m.group(2))
    m = re.match(r"^histogram_quantile\((.*)\)$", expr)
    if m:
        q_text, inner = _split_args(m.group(1))
        return _quantile(float(q_text), evaluate(inner, data))
    m = re.match(r"^(sum|max|count)\s*(?:by\s*\(([^)]*)\))?\s*\((.*)\)$", expr)
    if m:
        agg, by, inner = m.group(1), m.group(2), m.group(3).strip()
        keep = [b.strip() for b in by.split(",")] if by else []
        inner = re.sub(r"\s*==\s*1$", "", inner)
        result: dict[Labels, list[float]] = {}
        for labels, values in evaluate(inner, data).items():
            key = tuple((k, v) for k, v in labels if k in keep)
            acc = result.setdefault(key, [math.nan] * len(data.times))
            for i, v in enumerate(values):
                if math.isnan(v) or (agg == "count" and v != 1):
                    continue
                if agg == "count":
                    v = 1.0
                acc[i] = v if math.isnan(acc[i]) else (max(acc[i], v) if agg == "max" else acc[i] + v)
        return {k: [x * factor for x in v] for k, v in result.items()}
    m = re.match(r"^(rate|increase)\((.*)\)$", expr)
    if m:
        return _rate(m.group(1), m.group(2).strip(), data)
    sel = _SEL.match(expr)
    if not sel:
        raise ValueError(f"unsupported expression: {expr}")
    matchers = _matchers(sel.group("m"))
    out = {}
    for (name, labels), points in data.series.items():
        if name == sel.group("name") and _match(labels, matchers):
            out[labels] = [points.get(i, math.nan) for i in range(len(data.times))]
    return out


def _rate(fn: str, selector: str, data: Scrapes) -> dict[Labels, list[float]]:
    sel = _SEL.match(selector)
    if not sel:
        raise ValueError(selector)
    window = sel.group("w") or f"{int(RATE_WINDOW)}s"
    matchers = _matchers(sel.group("m"))
    out: dict[Labels, list[float]] = {}
    times = data.times
    for (name, labels), points in data.series.items():
        if name != sel.group("name") or not _match(labels, matchers):
            continue
        values = []
        for i, t in enumerate(times):
            if i not in points:
                values.append(math.nan)
                continue
            if window == "range":
                j = min(points)
            else:
                seconds = float(window.rstrip("s"))
                earlier = [k for k in points if k < i and times[k] <= t - seconds] or [k for k in points if k < i]
                if not earlier:
                    values.append(math.nan)
                    continue
                j = max(earlier) if times[max(earlier)] <= t - seconds else min(earlier)
            delta = points[i] - points[j] if points[i] >= points[j] else points[i]
            span = max(1e-9, times[i] - times[j])
            values.append(delta if fn == "increase" else delta / span)
        out[labels] = values
    return out


def _quantile(q: float, buckets: dict[Labels, list[float]]) -> dict[Labels, list[float]]:
    groups: dict[Labels, list[tuple[float, list[float]]]] = defaultdict(list)
    for labels, values in buckets.items():
        d = dict(labels)
        le = float("inf") if d.get("le") == "+Inf" else float(d.get("le", "nan"))
        groups[tuple((k, v) for k, v in labels if k != "le")].append((le, values))
    out = {}
    for key, bs in groups.items():
        bs.sort()
        n = len(bs[0][1])
        series = []
        for i in range(n):
            counts = [(le, v[i]) for le, v in bs if not math.isnan(v[i])]
            total = counts[-1][1] if counts else 0.0
            if total <= 0:
                series.append(math.nan)
                continue
            rank, prev_le, prev_c = q * total, 0.0, 0.0
            value = math.nan
            for le, c in counts:
                if c >= rank:
                    share = (rank - prev_c) / max(1e-12, c - prev_c)
                    value = prev_le if math.isinf(le) else prev_le + (le - prev_le) * share
                    break
                prev_le, prev_c = (le if not math.isinf(le) else prev_le), c
            series.append(value)
        out[key] = series
    return out


# ---- drawing ------------------------------------------------------------------------------------
def draw(dashboard: dict[str, Any], data: Scrapes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in dashboard["panels"] if p.get("targets")]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    plt.style.use("dark_background")
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6.2, rows * 3.0), squeeze=False)
    t0 = data.times[0]
    xs = [t - t0 for t in data.times]
    for ax, panel in zip(axes.flat, panels, strict=False):
        ax.set_title(panel.get("title", ""), fontsize=10, loc="left")
        ax.tick_params(labelsize=7)
        drawn = False
        for target in panel["targets"]:
            legend = target.get("legendFormat", "")
            for labels, values in sorted(evaluate(target["expr"], data).items()):
                if all(math.isnan(v) for v in values):
                    continue
                name = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m, d=dict(labels): d.get(m.group(1), ""), legend) or (
                    ",".join(v for _, v in labels) or "value")
                if panel.get("type") in ("stat", "bargauge"):
                    last = next((v for v in reversed(values) if not math.isnan(v)), math.nan)
                    ax.barh(name, last)
                    ax.text(last, name, f" {last:.3g}", va="center", fontsize=8)
                else:
                    ax.plot(xs, values, label=name, linewidth=1.2)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no data here\n(needs the operator on a cluster)" if "autoscaler" in json.dumps(
                panel["targets"]) else "no data in this run", ha="center", va="center", transform=ax.transAxes,
                color="grey")
        elif panel.get("type") not in ("stat", "bargauge"):
            ax.legend(fontsize=6, loc="upper left")
            ax.set_xlabel("seconds", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{dashboard.get('title', '')} — rendered from a real local run", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---- the workload -------------------------------------------------------------------------------
def run(seconds: float, step: float, out: Path) -> None:
    from humanizer.api.client import HumanizerClient
    from humanizer.api.testing import start_api_process
    from humanizer.fake_llm.testing import start_fake_llm_process
    from humanizer.local.redis_server import free_port
    from humanizer.local.stack import LocalStack

    base_port = free_port()
    with start_fake_llm_process(latency=0.2, jitter=0.05, api_key="sk-render") as llm:
        llm.configure(faults=[{"kind": "429", "probability": 0.05, "retry_after": 1},
                              {"kind": "400", "match": "FAULT-400"}])
        env = {
            "HUMANIZER_PROVIDER": "openai", "OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-render",
            "OPENAI_MODEL": "gpt-4o-mini", "CELERY_TASK_RETRY_DELAY": "0.5", "HUMANIZER_RATE_LIMIT_RPM": "1500",
            "MONITORING_PROMETHEUS_PORT": str(base_port), "HUMANIZER_CHUNK_CACHE_TTL_SECONDS": "0",
            "LOG_LEVEL": "WARNING",
        }
        with LocalStack(workers=2, concurrency=8, env=env) as stack:
            api_env = {**stack.env, "HUMANIZER_API_TOKENS": "render-token"}
            with start_api_process(env=api_env) as api:
                data = Scrapes()
                stop = threading.Event()
                import redis

                r = redis.Redis.from_url(stack.redis.url)

                def scraper() -> None:
                    while not stop.is_set():
                        t = time.time()
                        samples = scrape(f"{api.url}/metrics", "api", "api")
                        for k in range(2):
                            samples += scrape(f"http://127.0.0.1:{base_port + k}/metrics", f"worker-{k}", "worker")
                        info = r.info("memory")
                        samples += [("redis_up", {"pod": "redis"}, 1.0),
                                    ("redis_memory_used_bytes", {"pod": "redis"}, float(info["used_memory"]))]
                        data.add(t, samples)
                        stop.wait(max(0.0, step - (time.time() - t)))

                thread = threading.Thread(target=scraper, daemon=True)
                thread.start()
                rng = random.Random(3)
                client = HumanizerClient(api.url, "render-token")
                deadline = time.monotonic() + seconds
                n = 0
                while time.monotonic() < deadline - 15:
                    n += 1
                    paras = [f"Section {n}.{i}: it is important to note that the team utilizes robust tools "
                             f"for {rng.randint(2, 90)} projects. Furthermore, results improved."
                             for i in range(rng.randint(10, 80))]
                    if n == 3:
                        paras[1] += " FAULT-400"
                    client.submit("\n\n".join(paras), style=rng.choice(["casual", "neutral", "professional"]),
                                  chunk_max_tokens=40, priority=rng.choice(["high", "normal", "low"]))
                    time.sleep(rng.uniform(2.0, 5.0))
                time.sleep(max(0.0, deadline - time.monotonic()))
                stop.set()
                thread.join()
    for name, file in (("overview", "dashboard-overview.png"), ("job-drilldown", "dashboard-drilldown.png")):
        dashboard = json.loads((DASHBOARDS / f"{name}.json").read_text())
        draw(dashboard, data, out / file)
        print(f"wrote {out / file} ({len(data.times)} scrapes, {n} jobs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=90.0)
    p.add_argument("--step", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    a = p.parse_args()
    run(a.seconds, a.step, a.out)


if __name__ == "__main__":
    main()
