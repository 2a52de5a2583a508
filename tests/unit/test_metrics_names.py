"""Every Prometheus metric follows the conventions: one prefix, base units, _total on counters, few labels."""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY, generate_latest

from humanizer import metrics

pytestmark = pytest.mark.unit

# ``model`` only through metrics.model_label (names from the configuration, never a job's own choice);
# ``priority``: the four Celery priority steps.
ALLOWED_LABELS = {"outcome", "state", "transition", "reason", "error_kind", "queue", "provider", "status_code",
                  "direction", "task", "source", "method", "route", "status", "stage", "target", "model", "priority"}
FORBIDDEN_LABELS = {"job_id", "job", "chunk", "chunk_id", "task_id", "path", "url", "token", "text"}


def families() -> dict[str, str]:
    """name -> type, as Prometheus sees them (the text exposition's TYPE lines)."""
    text = generate_latest(REGISTRY).decode()
    return dict(re.findall(r"^# TYPE (humanizer_\S+) (\S+)$", text, re.M))


def test_one_prefix_and_all_metrics_listed() -> None:
    names = {m.describe()[0].name for m in metrics.ALL_METRICS}
    assert all(n.startswith("humanizer_") for n in names)
    registered = {fam.name for fam in REGISTRY.collect() if fam.name.startswith("humanizer")}
    assert registered == names, f"metrics outside ALL_METRICS: {registered - names}"


def test_counters_end_in_total_and_gauges_do_not() -> None:
    found = families()
    assert found, "no humanizer_ metric registered"
    for name, kind in found.items():
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), f"{name} is a {kind} but ends in _total"


def test_histograms_measure_seconds_or_ratios() -> None:
    for metric in metrics.ALL_METRICS:
        fam = metric.describe()[0]
        if fam.type == "histogram":
            assert fam.name.endswith(("_seconds", "_ratio")), fam.name
        assert not re.search(r"_(milliseconds|ms|minutes|hours|bytes_kb|kilobytes)(_|$)", fam.name), fam.name


def test_labels_are_low_cardinality() -> None:
    for metric in metrics.ALL_METRICS:
        labels = set(metric._labelnames)
        assert labels <= ALLOWED_LABELS, (metric.describe()[0].name, labels - ALLOWED_LABELS)
        assert not labels & FORBIDDEN_LABELS
        # every allowed label is a closed set (a handful of values each): tokens and cost by provider,
        # direction, model and fallback target are the widest, at 4
        assert len(labels) <= 4


def test_helpers_move_the_right_series() -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("humanizer_chunks_processed_total", outcome="stored")
    metrics.observe_chunk("stored", 0.4, queue_wait=1.5)
    assert value("humanizer_chunks_processed_total", outcome="stored") == before + 1
    assert value("humanizer_queue_wait_seconds_count", queue="humanize") >= 1

    other = value("humanizer_chunks_processed_total", outcome="other")
    metrics.observe_chunk("some-new-outcome-" + "x" * 50, 0.1)
    assert value("humanizer_chunks_processed_total", outcome="other") == other + 1

    metrics.observe_provider(429, 0.2)
    metrics.observe_provider(None, 1.0)
    metrics.observe_provider("timeout", 5.0)
    assert value("humanizer_provider_requests_total", provider="openai", status_code="429", target="primary") >= 1
    assert value("humanizer_provider_requests_total", provider="openai", status_code="error", target="primary") >= 1
    assert value("humanizer_provider_requests_total", provider="openai", status_code="timeout", target="primary") >= 1

    labels = {"provider": "openai", "model": "gpt-4o-mini", "target": "primary"}
    cost_before = value("humanizer_estimated_cost_usd_total", **labels)
    tokens_before = value("humanizer_tokens_total", direction="input", **labels)
    cost = metrics.observe_tokens(1_000_000, 1_000_000, "openai", "gpt-4o-mini-2024-07-18")
    assert cost == pytest.approx(0.75)
    assert value("humanizer_estimated_cost_usd_total", **labels) == pytest.approx(cost_before + 0.75)
    assert value("humanizer_tokens_total", direction="input", **labels) == tokens_before + 1_000_000
    assert metrics.observe_tokens(10, 10, "offline", "") == 0.0

    with metrics.task_in_flight("humanize_chunk"):
        assert value("humanizer_tasks_in_flight", task="humanize_chunk") == 1
    assert value("humanizer_tasks_in_flight", task="humanize_chunk") == 0

    metrics.observe_tell_scores(62.5, 140.0)
    assert value("humanizer_document_ai_tell_ratio_sum", stage="before") >= 0.625
    assert value("humanizer_document_ai_tell_ratio_bucket", stage="after", le="1.0") >= 1  # clamped to 1

    metrics.observe_job_finished("SUCCESS", 12.0)
    assert value("humanizer_jobs_finished_total", state="success") >= 1


def test_model_label_is_bounded_by_the_configuration() -> None:
    """Tokens and cost by model, without a job choosing label values: the configured model, the price
    table's names (a dated snapshot under its family), ``other`` for anything else."""
    from humanizer.config import get_settings

    configured = get_settings().openai_model
    assert metrics.model_label(configured) == configured
    assert metrics.model_label("gpt-4.1-mini-2025-04-14") == "gpt-4.1-mini"
    assert metrics.model_label("gpt-4o") == "gpt-4o"
    for chosen in ("my-fine-tune-" + "x" * 80, "llama3:8b", "", "gpt-4o\n{evil}"):
        assert metrics.model_label(chosen) in {"other", "gpt-4o"}
    assert metrics.model_label("llama3:8b") == "other"


def test_queue_wait_from_publish_header() -> None:
    headers: dict[str, object] = {}
    metrics.stamp_publish_time(headers=headers)

    class Request:
        eta = None

    req = Request()
    setattr(req, metrics.SENT_AT_HEADER, headers[metrics.SENT_AT_HEADER])
    wait = metrics.queue_wait_seconds(req, now=float(headers[metrics.SENT_AT_HEADER]) + 2.5)  # type: ignore[arg-type]
    assert wait == pytest.approx(2.5)
    assert metrics.queue_wait_seconds(Request()) is None


def test_worker_metrics_server_skips_a_taken_port() -> None:
    import socket
    import urllib.request

    from humanizer.api.testing import free_port

    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        bound = metrics.start_worker_metrics_server(port, addr="127.0.0.1", tries=8)
    assert bound is not None and port < bound < port + 8
    body = urllib.request.urlopen(f"http://127.0.0.1:{bound}/metrics", timeout=5).read().decode()
    assert "humanizer_chunks_processed_total" in body
    assert metrics.start_worker_metrics_server(0) is None
