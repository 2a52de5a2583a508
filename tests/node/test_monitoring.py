"""Monitoring for real: the Prometheus Operator configures a real Prometheus from the chart's
ServiceMonitor, PodMonitor and PrometheusRule; after real jobs (one with injected 429s, 5xx and a
dead letter) every target is up, every panel query of every dashboard returns data, every rule loads,
and alerts fire (and resolve) for real. See tests/node/monitoring.py for the set-up.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.helpers import wait_until

from .monitoring import REPO, Monitoring, Prom

sys.path.insert(0, str(REPO / "tools" / "dashboards"))
from render_png import render_all, substitute

from .release import CHART, Release, app_image_tag, fake_llm_objects
from .test_scale_and_faults import Job

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
ALERTS = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
# Short for-durations so that alerts can fire within a test (the chart's alertFor value).
ALERT_FOR = {"HumanizerNoWorkers": "10s", "HumanizerProviderAuthFailure": "5s", "HumanizerDeadLettersGrowing": "5s"}


@pytest.fixture(scope="module")
def prom(node: Any, release: Release) -> Iterator[Prom]:
    mon = Monitoring(node, release.kubectl)
    try:
        prometheus = mon.start()
        alert_for = [a for name, d in ALERT_FOR.items()
                     for a in ("--set", f"monitoring.prometheusRule.alertFor.{name}={d}")]  # fmt: skip
        release.helm(
            "upgrade", release.name, str(CHART), "-n", release.namespace, "--reuse-values",
            "--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.serviceMonitor.interval=5s",
            "--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.podMonitor.interval=5s",
            "--set", "monitoring.prometheusRule.enabled=true", *alert_for,
            # a (generous) rate limit, so that the rate-limiter panels have waits to show
            "--set", "config.rateLimit.rpm=20000",
            # recovery within the test's wait if a faulted chunk's message is lost (seen once in ~6 runs)
            "--set-string", "config.extraEnv.HUMANIZER_STALL_SECONDS=15",
            "--set", "redis.metrics.enabled=true",
            "--set", "redis.metrics.image.repository=localhost/humanizer-redis-exporter",
            "--set", f"redis.metrics.image.tag={app_image_tag()}",
            "--wait", "--timeout", "5m", timeout=330,
        )  # fmt: skip
        release.wait_all_ready()
        yield prometheus
    finally:
        mon.stop()


@pytest.fixture(scope="module")
def traffic(prom: Prom, release: Release) -> Iterator[tuple[float, float]]:
    """A job with injected 429s, 5xx and one permanent 400 (a dead letter), then a clean job."""
    start = time.time()
    faults = ["429:probability=0.15:retry_after=1", "500:probability=0.05", "400:match=FAULT-400"]
    release.kubectl.apply(fake_llm_objects(release.app_image, latency=0.2, faults=faults), namespace=release.namespace)
    release.k("rollout", "status", "deployment/fake-llm", "--timeout=120s", timeout=130)
    faulty = Job(release, 120, tag="FAULTY", extra_paragraph="This paragraph carries FAULT-400 on purpose.")
    status = release.wait_phase(faulty.name, 300)
    assert status["phase"] == "Failed" and "dead" in json.dumps(status).lower(), status
    release.kubectl.apply(fake_llm_objects(release.app_image, latency=0.2), namespace=release.namespace)
    release.k("rollout", "status", "deployment/fake-llm", "--timeout=120s", timeout=130)
    clean = Job(release, 60, tag="CLEAN")
    clean.finish()
    time.sleep(15)  # a few more scrapes after the last chunk
    yield start, time.time()
    faulty.delete()
    clean.delete()


def test_every_target_up(prom: Prom) -> None:
    def all_up() -> bool:
        jobs = {t["labels"].get("job"): t["health"] for t in prom.targets()}
        return {"api", "worker", "operator", "redis"} <= set(jobs) and all(h == "up" for h in jobs.values())

    try:
        wait_until(all_up, 90, "every target of the chart's ServiceMonitor/PodMonitor up", interval=2)
    except AssertionError as exc:
        seen = [(t["labels"].get("job"), t["scrapeUrl"], t["health"], t.get("lastError")) for t in prom.targets()]
        raise AssertionError(f"{exc}: {seen}") from None


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets") or []:
                out.append((path.stem, panel.get("title", "?"), target["expr"]))
    return out


def has_data(series: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(v)) for s in series for _, v in s.get("values") or [])


def test_every_panel_query_returns_data(prom: Prom, traffic: tuple[float, float]) -> None:
    start, end = traffic
    empty = []
    for dashboard, title, expr in panel_queries():
        query = substitute(expr, end - start)
        if not has_data(prom.query_range(query, start - 10, end + 5)):
            empty.append(f"{dashboard} / {title}: {query}")
    assert not empty, "panels without data over the run:\n" + "\n".join(empty)
    out = os.environ.get("HUMANIZER_DASHBOARD_PNG_DIR")
    if out:  # `make dashboards-png`: the README's pictures, from these answers
        for path in render_all(prom.url, start - 10, end + 5, Path(out)):
            print(f"\nwrote {path}")


def test_every_rule_loads(prom: Prom) -> None:
    wanted = {(g["name"], r.get("alert") or r.get("record")) for g in ALERTS["groups"] for r in g["rules"]}

    def loaded() -> set[tuple[str, str]]:
        return {(g["name"], r["name"]) for g in prom.rule_groups() for r in g["rules"] if r.get("health") == "ok"}

    wait_until(lambda: wanted <= loaded(), 90, "every rule of files/alerts.yaml loaded and healthy", interval=2)


def firing(prom: Prom, name: str) -> bool:
    return any(a["labels"].get("alertname") == name and a["state"] == "firing" for a in prom.alerts())


def test_dead_letter_alert_fires(prom: Prom, traffic: tuple[float, float]) -> None:
    wait_until(lambda: firing(prom, "HumanizerDeadLettersGrowing"), 90, "HumanizerDeadLettersGrowing firing")


def test_no_workers_alert_fires_and_resolves(prom: Prom, release: Release, traffic: tuple[float, float]) -> None:
    """Backlog with the workers scaled to zero fires HumanizerNoWorkers; a worker back resolves it."""
    deployment = release.deployment("worker")["metadata"]["name"]
    release.k("annotate", "deployment", deployment, "humanizer.dev/autoscale-paused=true", "--overwrite")
    try:
        release.k("scale", "deployment", deployment, "--replicas=0")
        wait_until(lambda: not release.pods("worker"), 120, "no worker pod left", interval=1)
        job = Job(release, 20, tag="NOWORK")
        try:
            wait_until(lambda: firing(prom, "HumanizerNoWorkers"), 120, "HumanizerNoWorkers firing", interval=2)
            release.k("scale", "deployment", deployment, "--replicas=1")
            job.finish()
            wait_until(lambda: not firing(prom, "HumanizerNoWorkers"), 120, "HumanizerNoWorkers resolved", interval=2)
        finally:
            job.delete()
    finally:
        release.k("annotate", "deployment", deployment, "humanizer.dev/autoscale-paused-")


def test_provider_auth_failure_alert_fires(prom: Prom, release: Release, traffic: tuple[float, float]) -> None:
    """A provider answering 401 stops the job and fires HumanizerProviderAuthFailure (its 5-minute
    window keeps it firing for 5 minutes, so its resolution is not waited for here)."""
    release.kubectl.apply(fake_llm_objects(release.app_image, latency=0.2, faults=["401"]), namespace=release.namespace)
    release.k("rollout", "status", "deployment/fake-llm", "--timeout=120s", timeout=130)
    job = Job(release, 5, tag="AUTH")
    try:
        status = release.wait_phase(job.name, 120)
        assert status["phase"] == "Failed", status
        wait_until(lambda: firing(prom, "HumanizerProviderAuthFailure"), 120, "HumanizerProviderAuthFailure firing",
                   interval=2)  # fmt: skip
    finally:
        job.delete()
        release.kubectl.apply(fake_llm_objects(release.app_image, latency=0.2), namespace=release.namespace)
        release.k("rollout", "status", "deployment/fake-llm", "--timeout=120s", timeout=130)
