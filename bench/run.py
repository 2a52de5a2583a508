"""``python -m bench.run [--quick|--tiny] [--only fanout,asyncio,...]``: run the scenarios, print the table,
write bench/results/<stamp>.json + latest.json and bench/results/efficiency.png.

Scenarios (issue 8): fanout (1), asyncio (2), sequential (3), overhead (4), ratelimit (5),
autoscale (6, not run here), scale (7). asyncio and sequential compare against fanout's numbers, so
they run after it. Exit status: 0 when the run completed (targets missed are reported, not an error);
1 when a scenario crashed.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import report
from bench.common import RESULTS_DIR, Config, Context, Row, machine

ORDER = (
    "fanout", "asyncio", "sequential", "overhead", "ratelimit", "autoscale", "scale", "headofline", "autoscale_node",
)
MODULES = {
    "fanout": "fanout",
    "asyncio": "asyncio_sdk",
    "sequential": "sequential",
    "overhead": "overhead",
    "ratelimit": "ratelimit",
    "autoscale": "autoscale",
    "scale": "scale",
    "headofline": "headofline",
    "autoscale_node": "autoscale_node",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short version (make bench-quick, < 3 min)")
    size.add_argument("--tiny", action="store_true", help="seconds; the smoke test's configuration")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(ORDER)}")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so every stack/worker/server is stopped on the way out


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    args = parse(argv)
    cfg = Config.tiny() if args.tiny else Config.quick() if args.quick else Config.full()
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(ORDER)
    unknown = [s for s in only if s not in ORDER]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}", file=sys.stderr)
        return 2
    from bench.common import FAKE_KEY
    from humanizer.fake_llm.testing import start_fake_llm_process

    started = time.time()
    rows: list[Row] = []
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    meta: dict[str, Any] = {
        "command": "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(),
        "config": vars(cfg),
        "scenarios": [s for s in ORDER if s in only],
    }
    with (
        tempfile.TemporaryDirectory(prefix="hz-bench-") as tmp,
        start_fake_llm_process(
            latency=cfg.latency,
            jitter=cfg.jitter,
            pad_tokens=cfg.pad_tokens,
            api_key=FAKE_KEY,
            log_limit=200_000,
        ) as fake,
    ):
        ctx = Context(cfg=cfg, fake=fake, work_dir=Path(tmp), results_dir=args.results_dir)
        for name in ORDER:
            if name not in only:
                continue
            print(f"[bench] {name} …", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                mod = importlib.import_module(f"bench.scenarios.{MODULES[name]}")
                rows.extend(mod.run(ctx))
            except Exception as exc:
                errors[name] = traceback.format_exc()
                print(errors[name], file=sys.stderr)
                rows.append(
                    Row(
                        name,
                        "",
                        None,
                        None,
                        "",
                        None,
                        "",
                        None,
                        status="error",
                        note=f"{type(exc).__name__}: {str(exc)[:200]}",
                    )
                )
            timings[name] = round(time.perf_counter() - t0, 1)
            print(f"[bench] {name} done in {timings[name]} s", file=sys.stderr, flush=True)
        curve = ctx.shared.get("efficiency", {})
    meta["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta["seconds"] = round(time.time() - started, 1)
    meta["scenario_seconds"] = timings
    plot = report.plot_efficiency(args.results_dir, curve, cfg.latency)
    doc = {
        "meta": meta,
        "rows": [r.as_dict() for r in rows],
        "efficiency_curve": {str(w): v for w, v in sorted(curve.items())},
        "plot": None if plot is None else str(plot.name),
        "errors": errors,
    }
    path = report.write_json(args.results_dir, doc)
    print(report.table(rows))
    print(
        f"\nmachine: {meta['machine']['cpus']} cores, {meta['machine']['memory_gib']} GiB, "
        f"Python {meta['machine']['python']}, Celery {meta['machine']['celery']}; {meta['seconds']} s"
    )
    print(f"results: {path} (and latest.json)" + (f"; plot: {plot}" if plot else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
