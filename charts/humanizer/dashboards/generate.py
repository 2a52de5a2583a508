"""Generate the Grafana dashboards in this folder: ``python charts/humanizer/dashboards/generate.py``.

Dashboards as code: panels are short declarations here; the JSON beside this file is what Grafana imports
(by hand, or through the chart's ConfigMaps with ``monitoring.dashboards.enabled``). tests/unit/
test_dashboards.py checks that the JSON is up to date and that every metric it queries exists.
Not packaged with the chart (.helmignore).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"
WORKER_JOB = 'job="worker"'
OUTCOME = 'outcome=~"$outcome"'


def sel(metric: str, *matchers: str) -> str:
    """``metric{namespace=~"$namespace", ...}``."""
    return f"{metric}{{{', '.join((NS, *matchers))}}}"


def quantiles(metric: str, *matchers: str, by: str = "") -> list[tuple[str, str]]:
    """p50/p95/p99 of a histogram over the rate interval."""
    group = f"le, {by}" if by else "le"
    out = []
    for q in ("0.5", "0.95", "0.99"):
        expr = f"histogram_quantile({q}, sum by ({group}) (rate({sel(metric + '_bucket', *matchers)}[{RATE}])))"
        label = f"p{int(float(q) * 100)}" + (f" {{{{{by}}}}}" if by else "")
        out.append((expr, label))
    return out


class Board:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0
        self.x = 0
        self.row_height = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "id": len(self.panels) + 1,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def panel(self, title: str, targets: list[tuple[str, str]], *, kind: str = "timeseries", unit: str = "short",
              w: int = 8, h: int = 8, description: str = "", stack: bool = False, **options: Any) -> None:
        if self.x + w > 24:
            self._newline()
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [
                {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                 "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                for i, (expr, legend) in enumerate(targets)
            ],
            "options": options or ({"legend": {"displayMode": "list", "placement": "bottom"}}
                                   if kind == "timeseries" else {}),
        }
        if kind == "timeseries":
            panel["fieldConfig"]["defaults"]["custom"] = {
                "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            }
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def text(self, title: str, content: str, w: int = 24, h: int = 6) -> None:
        if self.x + w > 24:
            self._newline()
        self.panels.append({"id": len(self.panels) + 1, "type": "text", "title": title,
                            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
                            "options": {"mode": "markdown", "content": content}})
        self.x += w
        self.row_height = max(self.row_height, h)


def variables(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "hide": 0, "refresh": 1},
        {"name": "namespace", "label": "Namespace", "type": "query",
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": {"query": "label_values(humanizer_queue_depth, namespace)", "refId": "namespace"},
         "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "sort": 1},
        *extra,
    ]}


def dashboard(uid: str, title: str, board: Board, templating: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["humanizer"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "templating": templating,
        "annotations": {"list": []},
        "links": [{"title": "Humanizer dashboards", "type": "dashboards", "tags": ["humanizer"], "asDropdown": True,
                   "icon": "external link", "includeVars": True, "keepTime": True, "targetBlank": False,
                   "tooltip": ""}],
        "panels": board.panels,
    }


def overview() -> dict[str, Any]:
    b = Board()
    b.row("Jobs")
    b.panel("Jobs finished by state", [
        (f"sum by (state) (rate({sel('humanizer_jobs_finished_total')}[{RATE}]))", "{{state}}")],
        unit="ops", stack=True, description="Jobs reaching SUCCESS, FAILURE or CANCELLED per second.")
    b.panel("Jobs submitted by entry point", [
        (f"sum by (source) (rate({sel('humanizer_jobs_submitted_total')}[{RATE}]))", "{{source}}")],
        unit="ops", stack=True)
    b.panel("Jobs in the selected range, by final state", [
        (f"sum by (state) (increase({sel('humanizer_jobs_finished_total')}[$__range]))", "{{state}}")],
        kind="stat", unit="short", description="Running jobs are not a metric: see the API or kubectl get hj.")
    b.panel("Job duration", quantiles("humanizer_job_duration_seconds", 'state="success"'), unit="s", w=12)
    b.panel("Tasks in flight", [
        (f"sum by (task) ({sel('humanizer_tasks_in_flight')})", "{{task}}")], w=12)

    b.row("Chunks")
    b.panel("Chunks per second by outcome", [
        (f"sum by (outcome) (rate({sel('humanizer_chunks_processed_total')}[{RATE}]))", "{{outcome}}")],
        unit="ops", stack=True, w=12)
    b.panel("Chunk latency (stored)", quantiles("humanizer_chunk_duration_seconds", 'outcome="stored"'),
            unit="s", w=12, description="One chunk task, provider call included.")

    b.row("Queues")
    b.panel("Queue depth", [
        (f"sum by (queue, priority) ({sel('humanizer_queue_depth')})", "{{queue}} priority {{priority}}"),
        (f"sum({sel('humanizer_queue_unacked')})", "unacked (delivered, running)"),
        (f"max({sel('humanizer_scheduler_window_batches')})", "scheduler window (batches)")], w=12,
        description="Batch messages. The fair scheduler keeps the queue about one window deep; the work it "
                    "still holds back is on the next panel.")
    b.panel("Held by the fair scheduler", [
        (f"max({sel('humanizer_scheduler_held_chunks')})", "chunks held")], w=12,
        description="Chunks of unfinished jobs not yet released to the queue (docs/architecture.md).")
    b.panel("Queue wait", quantiles("humanizer_queue_wait_seconds", by="queue"), unit="s", w=12,
            description="From publish (or ETA) until a worker starts the task.")

    b.row("Workers and autoscaling")
    b.panel("Workers: desired vs current", [
        (f"max({sel('humanizer_autoscaler_desired_replicas')})", "desired (autoscaler)"),
        (f"max({sel('humanizer_autoscaler_current_replicas')})", "current (Deployment)"),
        (f"max({sel('humanizer_autoscaler_ready_replicas')})", "ready (Deployment status)"),
        (f"count({sel('up', WORKER_JOB)} == 1)", "scraped and up")], w=24,
        description="The operator's autoscaler decision against the worker Deployment (its replicas and "
                    "its Ready pods), and the worker pods Prometheus reaches.")

    b.row("Retries and dead letters")
    b.panel("Retries by reason", [
        (f"sum by (reason) (rate({sel('humanizer_retries_total')}[{RATE}]))", "{{reason}}")],
        unit="ops", stack=True)
    b.panel("Dead letters by error kind", [
        (f"sum by (error_kind) (increase({sel('humanizer_dead_letters_total')}[{RATE}]))", "{{error_kind}}")],
        stack=True)
    b.panel("Dead letters pending", [(f"max({sel('humanizer_dead_letters_pending')})", "pending")], kind="stat",
            description="Waiting to be replayed (POST /v1/dead-letters/{id}/replay) or purged.")

    b.row("Provider")
    b.panel("Provider requests by status code", [
        (f"sum by (status_code) (rate({sel('humanizer_provider_requests_total')}[{RATE}]))", "{{status_code}}")],
        unit="reqps", stack=True)
    b.panel("Provider latency", quantiles("humanizer_provider_request_duration_seconds"), unit="s")
    b.panel("Rate-limiter waits", [
        *quantiles("humanizer_rate_limiter_wait_seconds"),
    ], unit="s", description="Time chunks waited for a cluster-wide rate-limit slot.")

    b.row("Tokens and cost")
    b.panel("Tokens per second", [
        (f"sum by (model, direction) (rate({sel('humanizer_tokens_total')}[{RATE}]))", "{{model}} {{direction}}")],
        unit="short", stack=True)
    b.panel("Estimated cost per hour", [
        (f"sum by (provider, model) (rate({sel('humanizer_estimated_cost_usd_total')}[{RATE}])) * 3600",
         "{{provider}} {{model}}")],
        unit="currencyUSD")
    b.panel("Estimated cost in range", [
        (f"sum(increase({sel('humanizer_estimated_cost_usd_total')}[$__range]))", "USD")],
        kind="stat", unit="currencyUSD", description="List prices; unknown models count as 0.")

    b.row("API and Redis")
    b.panel("HTTP requests by status", [
        (f"sum by (status) (rate({sel('humanizer_http_requests_total')}[{RATE}]))", "{{status}}")],
        unit="reqps", stack=True)
    b.panel("HTTP latency p95 by route", [
        (f"histogram_quantile(0.95, sum by (le, route) (rate({sel('humanizer_http_request_duration_seconds_bucket')}"
         f"[{RATE}])))", "{{route}}")], unit="s")
    b.panel("Redis", [
        (f"max({sel('redis_up')})", "up"),
        (f"max({sel('redis_memory_used_bytes')})", "memory used (bytes)")], kind="stat",
        description="From the redis_exporter sidecar (redis.metrics.enabled).")
    b.panel("Redis memory and maxmemory", [
        (f"max by (pod) ({sel('redis_memory_used_bytes')})", "used {{pod}}"),
        (f"max by (pod) ({sel('redis_memory_max_bytes')})", "maxmemory {{pod}}")], unit="bytes",
        description="With noeviction Redis refuses writes at maxmemory (redis.maxmemory: by default 80% of the "
                    "container's memory limit). HumanizerRedisMemoryHigh fires above 90%.")
    return dashboard("humanizer-overview", "Humanizer / Overview", b, variables(),
                     "Jobs, chunks, queues, workers, retries, dead letters, provider, tokens and cost.")


def drilldown() -> dict[str, Any]:
    pod = 'pod=~"$pod"'
    prov = 'provider=~"$provider"'
    b = Board()
    b.text("One job", (
        "Prometheus metrics stay low-cardinality: **no metric has a job id label**, so no panel here can show "
        "one job. Per-job progress, timings, tokens, cost and the verification report come from the API and "
        "the custom resource:\n\n"
        "* `GET /v1/jobs/${job_id}` (and `/v1/jobs/${job_id}/result`, `/v1/dead-letters?job_id=${job_id}`)\n"
        "* `humanizer status ${job_id}` or `kubectl get humanizejob -o wide`\n\n"
        "The panels below drill down by worker pod, provider and chunk outcome."), h=5)
    b.row("Workers (pod)")
    b.panel("Chunks per second by pod", [
        (f"sum by (pod) (rate({sel('humanizer_chunks_processed_total', pod, OUTCOME)}[{RATE}]))",
         "{{pod}}")], unit="ops", w=12)
    b.panel("Chunk latency p95 by pod", [
        (f"histogram_quantile(0.95, sum by (le, pod) (rate({sel('humanizer_chunk_duration_seconds_bucket', pod)}"
         f"[{RATE}])))", "{{pod}}")], unit="s", w=12)
    b.panel("Tasks in flight by pod", [
        (f"sum by (pod) ({sel('humanizer_tasks_in_flight', pod)})", "{{pod}}")], w=12)
    b.panel("Queue wait p95 by pod", [
        (f"histogram_quantile(0.95, sum by (le, pod) (rate({sel('humanizer_queue_wait_seconds_bucket', pod)}"
         f"[{RATE}])))", "{{pod}}")], unit="s", w=12)
    b.row("Outcomes, retries, dead letters")
    b.panel("Chunk outcomes", [
        (f"sum by (outcome) (increase({sel('humanizer_chunks_processed_total', pod, OUTCOME)}"
         f"[$__range]))", "{{outcome}}")], kind="bargauge", w=8)
    b.panel("Retries by reason and pod", [
        (f"sum by (reason, pod) (rate({sel('humanizer_retries_total', pod)}[{RATE}]))", "{{reason}} {{pod}}")],
        unit="ops", w=8)
    b.panel("Dead letters by error kind", [
        (f"sum by (error_kind) (increase({sel('humanizer_dead_letters_total', pod)}[$__range]))", "{{error_kind}}")],
        kind="bargauge", w=8)
    b.row("Provider")
    b.panel("Requests by provider and status", [
        (f"sum by (provider, status_code) (rate({sel('humanizer_provider_requests_total', prov, pod)}[{RATE}]))",
         "{{provider}} {{status_code}}")], unit="reqps", w=12)
    b.panel("Provider latency by provider", quantiles("humanizer_provider_request_duration_seconds", prov, pod,
                                                      by="provider"), unit="s", w=12)
    b.panel("Tokens by provider and direction", [
        (f"sum by (provider, direction) (rate({sel('humanizer_tokens_total', prov, pod)}[{RATE}]))",
         "{{provider}} {{direction}}")], w=12)
    b.panel("Rate-limiter wait p95 by pod", [
        (f"histogram_quantile(0.95, sum by (le, pod) (rate({sel('humanizer_rate_limiter_wait_seconds_bucket', pod)}"
         f"[{RATE}])))", "{{pod}}")], unit="s", w=12)

    def query_var(name: str, label: str, query: str) -> dict[str, Any]:
        return {"name": name, "label": label, "type": "query",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": {"query": query, "refId": name},
                "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "sort": 1}

    templating = variables(
        query_var("pod", "Worker pod", f"label_values(humanizer_chunks_processed_total{{{NS}}}, pod)"),
        query_var("provider", "Provider", f"label_values(humanizer_provider_requests_total{{{NS}}}, provider)"),
        query_var("outcome", "Chunk outcome", f"label_values(humanizer_chunks_processed_total{{{NS}}}, outcome)"),
        {"name": "job_id", "label": "Job id (for the API links)", "type": "textbox", "query": "",
         "hide": 0},
    )
    return dashboard("humanizer-drilldown", "Humanizer / Drill-down", b, templating,
                     "Per worker pod, provider and outcome; per-job data comes from the API (see the first panel).")


DASHBOARDS = {"overview.json": overview, "job-drilldown.json": drilldown}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {HERE / name}")
