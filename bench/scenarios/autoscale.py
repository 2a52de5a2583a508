"""Scenario 6 — autoscaling reaction, on the cluster tier (a real kube-apiserver on loopback).

Runs the cluster test ``test_burst_scales_up_drains_and_scales_back`` (a 400-chunk backlog, the operator
with a 1-s tick, worker pods run as local processes by the pod harness) and reads the two figures it
prints: the backlog → the worker Deployment patched, and → every new worker process having finished a
batch. Target ≤ 5 s for the patch; the baseline is KEDA's default polling interval (30 s).
Full runs only (it needs ~1–2 min for the control plane); the cluster binaries come from
``make cluster-tools`` (cached under ``~/.cache/humanizer``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from bench.common import REPO, Context, Row, not_run

TARGET = 5.0
KEDA_POLLING = 30.0
TEST = "tests/cluster/test_autoscaling.py::test_burst_scales_up_drains_and_scales_back"
_REACTION = re.compile(r"autoscaler reaction: ([\d.]+)s after the submission returned")
_CONSUMING = re.compile(r"workers consuming: ([\d.]+)s after the submission returned")


def run(ctx: Context) -> list[Row]:
    if ctx.cfg.name != "full":
        return [
            not_run(
                "6 autoscaling", f"{ctx.cfg.name} run: scenario 6 runs in `make bench` only", target=f"≤ {TARGET:.0f} s"
            )
        ]
    cmd = [sys.executable, "-m", "pytest", TEST, "-m", "cluster", "-s", "-q", "-p", "no:cacheprovider"]
    env = {**os.environ, "HUMANIZER_CACHE": os.environ.get("HUMANIZER_CACHE", os.path.expanduser("~/.cache/humanizer"))}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    reaction, consuming = _REACTION.search(out), _CONSUMING.search(out)
    if proc.returncode != 0 or not reaction or not consuming:
        tail = " | ".join(line for line in out.strip().splitlines()[-3:])
        return [
            not_run(
                "6 autoscaling",
                f"cluster test did not complete (exit {proc.returncode}): {tail[:300]}",
                target=f"≤ {TARGET:.0f} s",
            )
        ]
    patched, started = float(reaction.group(1)), float(consuming.group(1))
    return [
        Row(
            "6 autoscaling",
            "400-chunk backlog → worker Deployment patched",
            round(patched, 2),
            KEDA_POLLING,
            "KEDA default polling interval",
            round(patched / KEDA_POLLING, 3),
            f"≤ {TARGET:.0f} s",
            patched <= TARGET,
            unit="s",
            note=f"then {started:.1f} s until all 4 worker processes had each finished a batch "
            "(process start-up included)",
            details={"patched_seconds": patched, "consuming_seconds": started, "test": TEST},
        ),
        Row(
            "6 autoscaling",
            "400-chunk backlog → 4 worker processes consuming",
            round(started, 2),
            KEDA_POLLING,
            "KEDA default polling interval",
            round(started / KEDA_POLLING, 3),
            "info",
            None,
            unit="s",
        ),
    ]
