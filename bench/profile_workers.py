"""``python -m bench.profile_workers [--w 128] [--jobs 2]``: where our worker processes spend their CPU.

The fan-out layout of ``make bench`` (``bench.common.our_layout``) against the same fake server; after a
warm-up job, py-spy samples every worker process (only the thread holding the GIL, so samples are CPU
time, not waiting) while ``--jobs`` jobs of 10·W chunks run one after the other. Written to
``bench/results/``: ``profile_worker_w<W>.txt`` (the functions by self and by inclusive share of the
samples, and the per-chunk CPU of the workers) and ``profile_worker_w<W>.collapsed`` (py-spy's raw
collapsed stacks: ``flamegraph.pl`` or https://www.speedscope.app read them).

Not part of ``make bench``; ``make bench-profile`` runs it. py-spy is pinned in the dev group.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    FAKE_KEY,
    RESULTS_DIR,
    Config,
    Context,
    CpuMeter,
    chunk_texts,
    local_stack,
    our_layout,
    process_groups,
    worker_pids,
)
from bench.ours import run_job


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(found):
        raise SystemExit("py-spy not found: `make venv` installs the dev group")
    return found


def summarize(collapsed: list[Path], top: int = 40) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Samples in total, and (function, samples) by self and by inclusive count, from collapsed stacks
    (``frame;frame;frame count`` per line; a frame is ``function (file:line)``)."""
    self_n: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for path in collapsed:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [_frame(f) for f in stack.split(";")]
            self_n[frames[-1]] += n
            for f in set(frames):
                incl[f] += n
    return total, self_n.most_common(top), incl.most_common(top)


def _frame(raw: str) -> str:
    """``function (path/to/module.py:123)`` → ``function (module.py)``: lines merged, path shortened."""
    func, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    for anchor in ("site-packages", "humanizer", "lib"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :] if anchor != "humanizer" else parts[parts.index(anchor) :]
            break
    return f"{func} ({'/'.join(parts[-3:])})"


def timeline(requests: list[dict[str, float]], t0: float, makespan: float, w: int) -> str:
    """The ramp and the tail of one job, from the fake server's own arrival times and durations (both
    processes read the same monotonic clock): when the first call arrived, when W were first in flight,
    when the last reply went out, and the job's end as its submitter saw it."""
    ok = sorted((r["t"], r["t"] + r["duration"]) for r in requests if r["status"] == 200)
    if not ok:
        return "no requests logged"
    events = sorted([(a, 1) for a, _ in ok] + [(b, -1) for _, b in ok])
    in_flight, full = 0, None
    for t, step in events:
        in_flight += step
        if in_flight >= w and full is None:
            full = t
    last = max(b for _, b in ok)
    ms = lambda t: f"+{(t - t0) * 1000:.0f} ms"  # noqa: E731
    return (f"first call {ms(ok[0][0])}, {w} in flight {ms(full) if full else 'never'}, last reply {ms(last)}, "
            f"job seen done +{makespan * 1000:.0f} ms (tail {(t0 + makespan - last) * 1000:.0f} ms)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_workers", description=__doc__.split("\n\n")[0])
    p.add_argument("--w", type=int, default=128, help="concurrent provider calls in total (32, 64, 128)")
    p.add_argument("--jobs", type=int, default=2, help="jobs of 10·W chunks sampled")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    from humanizer.fake_llm.testing import start_fake_llm_process

    cfg = Config.full()
    w, n = args.w, 10 * args.w
    procs, held, env = our_layout(w)
    spy = _py_spy()
    args.results_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="hz-profile-") as tmp,
        start_fake_llm_process(latency=cfg.latency, jitter=cfg.jitter, pad_tokens=cfg.pad_tokens, api_key=FAKE_KEY)
        as fake,
    ):
        ctx = Context(cfg=cfg, fake=fake, work_dir=Path(tmp))
        with local_stack(ctx, procs, held, **env) as stack:
            run_job(chunk_texts(w, "profwarm"))
            outs = [Path(tmp) / f"worker{i}.collapsed" for i in range(procs)]
            spies = [
                subprocess.Popen(
                    [spy, "record", "--pid", str(pid), "--gil", "--nonblocking", "--rate", str(args.rate),
                     "--format", "raw", "--output", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for pid, out in zip(worker_pids(stack), outs, strict=True)
            ]
            time.sleep(1.0)  # py-spy attached
            meter = CpuMeter(process_groups(ctx, stack)).start()
            makespans = [run_job(chunk_texts(n, f"prof{k}"))["makespan"] for k in range(args.jobs)]
            cpu = meter.stop()
            for s in spies:
                s.send_signal(signal.SIGINT)
            errors = [s.communicate(timeout=30)[1] for s in spies]
            missing = [o for o in outs if not o.exists()]
            if missing:
                raise SystemExit(f"py-spy wrote no profile: {errors}")
            total, by_self, by_incl = summarize(outs)
            collapsed = args.results_dir / f"profile_worker_w{w}.collapsed"
            collapsed.write_text("".join(o.read_text() for o in outs))
            fake.reset(keep_config=True)
            t0 = time.monotonic()
            job = run_job(chunk_texts(n, "proftimeline"))
            line = timeline(fake.stats()["requests"], t0, job["makespan"], w)
    chunks = n * args.jobs
    lines = [
        f"worker CPU profile: W={w} ({procs} processes × {env['HUMANIZER_WORKER_CALLS']} call slots, "
        f"batches of {env['HUMANIZER_BATCH_SIZE']}), {args.jobs} jobs × {n} chunks, py-spy --gil at {args.rate} Hz",
        "makespans: " + ", ".join(f"{m:.2f} s" for m in makespans),
        "CPU ms per chunk: " + ", ".join(f"{k} {v * 1000 / chunks:.2f}" for k, v in sorted(cpu.items())),
        f"timeline of one more job (not sampled): {line}",
        f"samples: {total}",
        "",
        "by self time (% of samples)",
        *(f"  {100 * c / max(total, 1):5.1f}%  {f}" for f, c in by_self),
        "",
        "by inclusive time (% of samples)",
        *(f"  {100 * c / max(total, 1):5.1f}%  {f}" for f, c in by_incl),
    ]
    text = "\n".join(lines) + "\n"
    (args.results_dir / f"profile_worker_w{w}.txt").write_text(text)
    print(text)
    print(f"written: {args.results_dir}/profile_worker_w{w}.txt and {collapsed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
