"""Scenario 6 — autoscaling reaction (cluster tier). Not run by this harness yet."""

from __future__ import annotations

from bench.common import Context, Row, not_run


def run(ctx: Context) -> list[Row]:
    return [
        not_run(
            "6 autoscaling",
            "not run: needs the cluster tier and the operator's autoscaler, which is still "
            "being written; tests/cluster/test_autoscaling.py covers behaviour, not a benchmark",
            target="reaction time (cluster tier)",
        )
    ]
