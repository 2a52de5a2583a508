"""The operator's /metrics, served for real: its autoscaler metrics and the jobs it submits."""

from __future__ import annotations

import re
import urllib.request

import pytest

from humanizer.local.redis_server import free_port
from humanizer.metrics import count_job_submitted
from humanizer_operator.metrics import start_metrics_server

pytestmark = pytest.mark.integration


def test_operator_port_serves_autoscaler_and_submission_metrics() -> None:
    port = free_port()
    start_metrics_server(port, addr="127.0.0.1")
    before = scrape(port)
    count_job_submitted("operator")
    after = scrape(port)
    assert "humanizer_autoscaler_desired_replicas" in after
    key = 'humanizer_jobs_submitted_total{source="operator"}'
    assert after[key] == before.get(key, 0.0) + 1
    # every entry point is exported at 0 from the start, so rate() sees a first submission
    assert 'humanizer_jobs_submitted_total{source="api"}' in before


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


def test_auth_failures_are_exported_at_zero_before_the_first_one() -> None:
    """HumanizerProviderAuthFailure is `increase(...{status_code=~"401|403"}[5m]) > 0`: a series that
    appears already at its final value (a job stopped by its first 401s) shows no increase."""
    port = free_port()
    start_metrics_server(port, addr="127.0.0.1")
    metrics = scrape(port)
    assert 'humanizer_provider_requests_total{provider="openai",status_code="401",target="primary"}' in metrics
