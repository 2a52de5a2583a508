"""Scrape /metrics after real jobs and check that counters moved by exactly the right amounts.

The worker-side half needs the worker to call the helpers in humanizer.metrics and to start its metrics
server on MONITORING_PROMETHEUS_PORT (see the wiring notes in humanizer/metrics.py).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from humanizer.api.app import create_app
from humanizer.api.settings import ApiSettings
from humanizer.api.testing import free_port, serve_in_thread
from humanizer.broker import configure_app
from humanizer.config import get_settings
from humanizer.jobs.models import JobStatus
from humanizer.local.stack import LocalStack
from humanizer.orchestration import OrchestrationService
from tests.integration.conftest import FAKE_KEY

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, timeout: float = 5.0) -> Samples:
    text = urllib.request.urlopen(url, timeout=timeout).read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """Change of the series ``name`` with exactly ``labels`` (or summed over all series if no labels)."""
    def total(samples: Samples) -> float:
        if labels:
            return samples.get((name, frozenset(labels.items())), 0.0)
        return sum(v for (n, _), v in samples.items() if n == name)
    return total(after) - total(before)


def metrics_model_label() -> str:
    """The ``model`` label of the stack's jobs: the configured model (humanizer.metrics.model_label)."""
    from humanizer.metrics import model_label

    return model_label(get_settings().openai_model)


def repoint_celery() -> None:
    """Point the process-wide Celery app at the current settings' Redis (drops stale connections)."""
    configure_app(get_settings())


class OwnStack(LocalStack):
    def _apply_env(self) -> Any:
        settings = super()._apply_env()
        repoint_celery()
        return settings


@pytest.fixture(scope="module")
def metrics_stack(fake_llm: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, int]]:
    """One worker of our own (its own Redis) with MONITORING_PROMETHEUS_PORT set."""
    port = free_port()
    env = {
        "HUMANIZER_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake_llm.url,
        "OPENAI_API_KEY": FAKE_KEY,
        "OPENAI_MODEL": "gpt-4o-mini",
        "OPENAI_TIMEOUT": "5",
        "CELERY_TASK_RETRY_DELAY": "0.1",
        "CELERY_TASK_RETRY_MAX_DELAY": "2",
        "CELERY_TASK_MAX_RETRIES": "3",
        "HUMANIZER_KEY_PREFIX": "hzm",
        "MONITORING_PROMETHEUS_PORT": str(port),
        "HUMANIZER_BATCH_SIZE": "4",
    }
    stack = OwnStack(workers=1, concurrency=4, env=env, work_dir=tmp_path_factory.mktemp("metrics"))
    try:
        with stack:
            yield stack, port
    finally:
        repoint_celery()  # the shared stack's Redis again, for the tests that follow


def worker_metrics_url(port: int, timeout: float = 8.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for candidate in range(port, port + 4):
            url = f"http://127.0.0.1:{candidate}/metrics"
            try:
                if "humanizer_" in urllib.request.urlopen(url, timeout=1).read().decode():
                    return url
            except OSError:
                pass
        time.sleep(0.2)
    pytest.fail(f"no worker metrics on MONITORING_PROMETHEUS_PORT={port}: the worker does not start "
                "humanizer.metrics.start_worker_metrics_server() yet")


def run_job(svc: OrchestrationService, chunks: list[str], **options: Any) -> Any:
    job = svc.process_text_parallel(chunks, "neutral", enable_verification=False, **options)
    return svc.wait(job["job_id"], timeout=60, poll=0.1)


def test_api_metrics_move(metrics_stack: tuple[LocalStack, int], fake_llm: Any) -> None:
    fake_llm.reset()
    settings = get_settings()
    app = create_app(settings, ApiSettings(tokens="tok-metrics"))
    with serve_in_thread(app) as url:
        before = scrape(f"{url}/metrics")
        resp = httpx2.post(f"{url}/v1/jobs", json={"chunks": ["Metrics chunk one.", "Metrics chunk two."]},
                           headers={"Authorization": "Bearer tok-metrics"})
        assert resp.status_code == 202, resp.text
        httpx2.get(f"{url}/v1/jobs/{resp.json()['job_id']}", headers={"Authorization": "Bearer tok-metrics"})
        OrchestrationService().wait(resp.json()["job_id"], timeout=60, poll=0.1)
        after = scrape(f"{url}/metrics")
    assert delta(before, after, "humanizer_jobs_submitted_total", source="api") == 1
    assert delta(before, after, "humanizer_http_requests_total", method="POST", route="/v1/jobs", status="202") == 1
    assert delta(before, after, "humanizer_http_requests_total", method="GET", route="/v1/jobs/{job_id}",
                 status="200") == 1
    for queue in ("humanize", "control"):  # every priority step of each queue (0, 3, 6, 9)
        for step in ("0", "3", "6", "9"):
            assert ("humanizer_queue_depth", frozenset({("queue", queue), ("priority", step)})) in after


def test_worker_counters_after_jobs(metrics_stack: tuple[LocalStack, int], fake_llm: Any, tmp_path: Path) -> None:
    _, port = metrics_stack
    fake_llm.reset()
    url = worker_metrics_url(port)
    svc = OrchestrationService()

    before = scrape(url)
    view = run_job(svc, [f"Plain chunk number {i}. It utilizes tools." for i in range(6)])
    assert view.status == JobStatus.SUCCESS, view.error
    after = scrape(url)
    assert delta(before, after, "humanizer_chunks_processed_total", outcome="stored") == 6
    assert delta(before, after, "humanizer_chunk_duration_seconds_count", outcome="stored") == 6
    # queue wait is per task message: 6 chunks are 2 batch tasks of at most 4 (the stack's batch size)
    assert delta(before, after, "humanizer_queue_wait_seconds_count", queue="humanize") == 2
    assert delta(before, after, "humanizer_provider_requests_total", provider="openai", status_code="200",
                 target="primary") == 6
    assert delta(before, after, "humanizer_provider_request_duration_seconds_count", provider="openai",
                 target="primary") == 6
    model = metrics_model_label()
    assert delta(before, after, "humanizer_tokens_total", provider="openai", direction="input",
                 model=model, target="primary") == view.tokens_in
    assert delta(before, after, "humanizer_tokens_total", provider="openai", direction="output",
                 model=model, target="primary") == view.tokens_out
    assert delta(before, after, "humanizer_estimated_cost_usd_total", provider="openai", model=model,
                 target="primary") > 0
    assert delta(before, after, "humanizer_jobs_finished_total", state="success") == 1
    assert delta(before, after, "humanizer_job_duration_seconds_count", state="success") == 1
    assert delta(before, after, "humanizer_retries_total") == 0
    assert after.get(("humanizer_tasks_in_flight", frozenset({("task", "humanize_chunk")})), 0) == 0

    # 429 once per chunk, then success: one retry and one 429 per chunk
    fake_llm.configure(faults=[{"kind": "429", "retry_after": 0.2, "times_per_text": 1}])
    before = scrape(url)
    view = run_job(svc, [f"Retried chunk number {i}. It utilizes tools." for i in range(3)])
    assert view.status == JobStatus.SUCCESS, view.error
    after = scrape(url)
    assert delta(before, after, "humanizer_retries_total") == 3
    assert delta(before, after, "humanizer_provider_requests_total", provider="openai", status_code="429",
                 target="primary") == 3
    assert delta(before, after, "humanizer_provider_requests_total", provider="openai", status_code="200",
                 target="primary") == 3
    assert delta(before, after, "humanizer_chunks_processed_total", outcome="stored") == 3

    # a permanent 400: one dead letter, no retry
    fake_llm.configure(faults=[{"kind": "400", "match": "FAULT-400"}])
    before = scrape(url)
    view = run_job(svc, ["Fine chunk.", "This one says FAULT-400."])
    after = scrape(url)
    assert delta(before, after, "humanizer_dead_letters_total") == 1
    assert delta(before, after, "humanizer_chunks_processed_total", outcome="dead_lettered") == 1
    assert delta(before, after, "humanizer_provider_requests_total", provider="openai", status_code="400",
                 target="primary") == 1
    assert delta(before, after, "humanizer_retries_total") == 0
    fake_llm.reset()
