"""The benchmark harness runs: a tiny configuration (seconds), checked for shape and sane numbers.

The benchmarks themselves are not part of `make test` (`make bench`, `make bench-quick`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = {"1 fan-out", "2 vs asyncio", "3 vs sequential", "4 overhead", "5 rate limit", "6 autoscaling", "7 scale",
             "8 head-of-line", "9 autoscaling (node)"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), str(REPO / "service")) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--results-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, f"bench.run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    doc = json.loads((out / "latest.json").read_text())
    return doc, proc.stdout, out


def test_json_shape(bench_run: tuple[dict, str, Path]) -> None:
    doc, _, out = bench_run
    assert set(doc) >= {"meta", "rows", "efficiency_curve", "errors"}
    assert doc["errors"] == {}
    assert doc["meta"]["config"]["name"] == "tiny"
    assert doc["meta"]["machine"]["cpus"] >= 1
    stamped = [p for p in out.glob("bench-tiny-*.json")]
    assert len(stamped) == 1 and json.loads(stamped[0].read_text()) == doc
    for row in doc["rows"]:
        assert set(row) >= {"scenario", "metric", "ours", "baseline", "ratio", "target", "passed", "status"}
        assert row["status"] in {"ok", "not run"}
    assert {r["scenario"] for r in doc["rows"]} == SCENARIOS
    for scenario in ("6 autoscaling", "9 autoscaling (node)"):  # full runs only
        (autoscale,) = [r for r in doc["rows"] if r["scenario"] == scenario]
        assert autoscale["status"] == "not run" and autoscale["note"]
    fan = [r for r in doc["rows"] if r["scenario"] == "1 fan-out"]
    assert {r["target"] for r in fan if r["baseline_name"] == "SDK calls alone"} <= {"info", "≥ 0.97 × ceiling",
                                                                                   "≥ 0.92 × ceiling"}


def test_numbers_are_sane(bench_run: tuple[dict, str, Path]) -> None:
    doc, _, _ = bench_run
    rows = doc["rows"]
    fan = [r for r in rows if r["scenario"] == "1 fan-out" and not r["metric"].startswith("CPU ms")]
    assert fan
    for r in fan:
        assert 0 < r["ours"] <= 1.2 and 0 < r["baseline"] <= 1.2
    cpu = [r for r in rows if r["scenario"] == "1 fan-out" and r["metric"].startswith("CPU ms")]
    assert len(cpu) == len(doc["meta"]["config"]["fanout_ws"])
    for r in cpu:  # ours makes the same calls to the same server, and more: its CPU per chunk is higher
        assert r["ours"] > r["baseline"] > 0 and 0 < r["ratio"] < 1, r
        assert set(r["details"]["ours_ms"]) == {"client", "workers", "redis", "fake_llm"}
        assert set(r["details"]["ceiling_ms"]) == {"clients", "fake_llm"}
    ceiling = [r for r in fan if r["baseline_name"] == "SDK calls alone"]  # one per W, a real measurement
    assert len(ceiling) == len(doc["meta"]["config"]["fanout_ws"])
    assert all(
        run["makespan"] > 0 and run["cpu_seconds"]["clients"] > 0
        for r in ceiling
        for run in r["details"]["sdk_processes"]
    )
    for w, curve in doc["efficiency_curve"].items():
        assert int(w) > 0
        for key, eff in curve.items():
            assert 0 < eff <= 1.2, (w, key, eff)
    (asy,) = [r for r in rows if r["scenario"] == "2 vs asyncio"]
    assert asy["ours"] > 0 and asy["baseline"] > 0 and asy["ratio"] > 0
    seq = [r for r in rows if r["scenario"] == "3 vs sequential"]
    assert seq and all(r["ratio"] > 1 for r in seq)  # parallel beats one call at a time
    ov = [r for r in rows if r["scenario"] == "4 overhead"]
    assert ov[0]["ours"] > 0 and ov[0]["baseline"] > 0
    (rl,) = [r for r in rows if r["scenario"] == "5 rate limit"]
    assert 0 < rl["ratio"] <= 1.2
    scale = [r for r in rows if r["scenario"] == "7 scale"]
    assert scale[0]["ours"] > 0 and scale[0]["details"]["peak_rss_workers"] > 0
    assert scale[0]["details"]["peak_rss_api"] > 0  # the document went through a real API process
    assert scale[0]["details"]["result_bytes"] >= scale[0]["details"]["doc_bytes"] * 0.5


def test_table_printed(bench_run: tuple[dict, str, Path]) -> None:
    _, stdout, out = bench_run
    header = next(line for line in stdout.splitlines() if line.startswith("scenario"))
    for col in ("scenario", "ours", "baseline", "ratio", "target", "pass"):
        assert col in header
    assert "NOT RUN" in stdout  # scenario 6, with its reason
    assert "results:" in stdout
    plots = [p for p in (out / "efficiency.png", out / "efficiency.svg") if p.exists()]  # SVG without matplotlib
    assert plots and plots[0].stat().st_size > 1000
