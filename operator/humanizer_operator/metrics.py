"""The autoscaler's Prometheus metrics.

They live here, in a registry of their own, not in ``humanizer.metrics``: that module's conventions
test requires every metric in the default registry to be listed in its ``ALL_METRICS``, and the
operator is the only process that sets these. Names follow the same conventions (``humanizer_``
prefix, ``_total`` on counters, a low-cardinality ``reason`` label).
"""

from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric

from humanizer_operator.autoscaler import REASONS

REGISTRY = CollectorRegistry(auto_describe=True)

DESIRED_REPLICAS = Gauge(
    "humanizer_autoscaler_desired_replicas", "Worker replicas the autoscaler wants", registry=REGISTRY
)
CURRENT_REPLICAS = Gauge(
    "humanizer_autoscaler_current_replicas", "Worker replicas the Deployment asks for now", registry=REGISTRY
)
READY_REPLICAS = Gauge(
    "humanizer_autoscaler_ready_replicas",
    "Worker replicas that are Ready (the Deployment's status): what actually runs, against desired/current",
    registry=REGISTRY,
)
DECISIONS = Counter(
    "humanizer_autoscaler_decisions_total", "Autoscaler decisions, by reason", ["reason"], registry=REGISTRY
)
QUEUED = Gauge(
    "humanizer_autoscaler_queued_tasks",
    "Work waiting in the worker queues, in chunks (a merge/verify task counts as one)",
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "humanizer_autoscaler_in_flight_tasks",
    "Work delivered to workers and not yet acknowledged, in chunks (a merge/verify task counts as one)",
    registry=REGISTRY,
)

for _reason in REASONS:
    DECISIONS.labels(_reason)


class _Both:
    """The operator's registry and humanizer.metrics' (jobs the operator submits, counted by the shared
    submission path), served together: found on the node tier, a dashboard fed by the operator's port
    saw none of the HumanizeJobs' submissions."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from prometheus_client.REGISTRY.collect()


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics (this registry and humanizer.metrics') on ``port``; 0 disables."""
    if port:
        served = CollectorRegistry(auto_describe=False)
        served.register(_Both())
        prometheus_client.start_http_server(port, addr=addr, registry=served)
