"""The autoscaler against someone else moving the worker Deployment while a tick decides.

A scale-down tick reads the Deployment, decides, steers (asks every worker what it runs, up to the inspect
timeout), and only then patches the scale. A user who pauses autoscaling or runs ``kubectl scale`` in that
time must win. These tests run one autoscaler in this process against the real API server and a real
Redis, and inject the other writer at the two moments that matter: while the tick steers, and between its
last read and its patch (where only the API server's resourceVersion precondition can tell). Each fault
asserts that it hit inside the tick, and a tick left alone is shown to scale down, so the tests can fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from humanizer.config import Settings
from humanizer.local.redis_server import RedisServer
from humanizer_operator import k8s
from humanizer_operator.autoscaler import PAUSED, SCALE_DOWN, STEADY
from humanizer_operator.handlers.autoscale import Autoscaler
from humanizer_operator.settings import OperatorSettings

from .conftest import Cluster
from .helpers import Kubectl
from .operator_support import worker_deployment

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

PAUSE = {"metadata": {"annotations": {k8s.PAUSE_ANNOTATION: "true"}}}


@pytest.fixture
def scaler(cluster: Cluster, kubectl: Kubectl, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Autoscaler]:
    """An autoscaler for a 3-replica worker Deployment with no work: its first tick scales down to 1
    (no stabilisation window). Its Kubernetes client talks to this cluster."""
    redis_server = RedisServer().start()
    try:
        for key, value in redis_server.env().items():
            monkeypatch.setenv(key, value)
        api = cluster.api_client()  # the operator's own client, configured from this cluster's kubeconfig
        monkeypatch.setattr(k8s, "api_client", lambda: api)
        kubectl.apply(worker_deployment("worker", {}, replicas=3), namespace=namespace)
        op = OperatorSettings(worker_deployment="worker", worker_namespace=namespace, min_replicas=1,
                              max_replicas=4, scale_down_stabilization_seconds=0, inspect_timeout_seconds=0.5)
        yield Autoscaler(op, Settings())
    finally:
        redis_server.cleanup()


def replicas(apps_v1: client.AppsV1Api, namespace: str) -> int:
    return int(apps_v1.read_namespaced_deployment("worker", namespace).spec.replicas)


def while_steering(scaler: Autoscaler, monkeypatch: pytest.MonkeyPatch, interfere: Callable[[], None]) -> list[str]:
    """Run ``interfere`` inside the tick's scale-down steering (after its decision, before its patch)."""
    hits: list[str] = []
    steer = scaler.steer_scale_down

    def steer_and_interfere(namespace: str, match_labels: Mapping[str, str]) -> dict[str, int]:
        interfere()
        hits.append("steering")
        return steer(namespace, match_labels)

    monkeypatch.setattr(scaler, "steer_scale_down", steer_and_interfere)
    return hits


def test_an_undisturbed_tick_scales_down(scaler: Autoscaler, apps_v1: client.AppsV1Api, namespace: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hits = while_steering(scaler, monkeypatch, lambda: None)
    tick = scaler.tick()
    assert tick is not None and tick.patched and tick.decision.reason == SCALE_DOWN, tick
    assert hits == ["steering"]
    assert replicas(apps_v1, namespace) == 1


def test_a_pause_set_while_the_tick_steers_wins(scaler: Autoscaler, apps_v1: client.AppsV1Api, namespace: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    hits = while_steering(scaler, monkeypatch,
                          lambda: apps_v1.patch_namespaced_deployment("worker", namespace, PAUSE))
    tick = scaler.tick()
    assert hits == ["steering"], "the pause was not set inside the tick"
    assert tick is not None and not tick.patched and tick.decision.reason == PAUSED, tick
    assert replicas(apps_v1, namespace) == 3
    again = scaler.tick()  # and the pause holds on the ticks after
    assert again is not None and again.decision.reason == PAUSED and replicas(apps_v1, namespace) == 3


def test_a_manual_scale_made_while_the_tick_steers_is_not_undone(
    scaler: Autoscaler, apps_v1: client.AppsV1Api, namespace: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def kubectl_scale() -> None:
        apps_v1.patch_namespaced_deployment_scale("worker", namespace, {"spec": {"replicas": 2}})

    hits = while_steering(scaler, monkeypatch, kubectl_scale)
    tick = scaler.tick()
    assert hits == ["steering"], "the manual scale was not made inside the tick"
    assert tick is not None and not tick.patched and tick.decision.reason == STEADY, tick
    assert "changed while deciding" in tick.decision.detail
    assert replicas(apps_v1, namespace) == 2, "the tick undid the manual scale"


def test_a_change_between_the_last_read_and_the_patch_gets_a_conflict(
    scaler: Autoscaler, apps_v1: client.AppsV1Api, namespace: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last gap (milliseconds in real life) is held open: the test writes the Deployment just before
    the tick's scale patch leaves, and the API server refuses that patch (409) by its resourceVersion."""
    answers: list[int] = []

    class Interfering(client.AppsV1Api):
        def patch_namespaced_deployment_scale(self, name: str, namespace: str, body: Any, **kw: Any) -> Any:
            apps_v1.patch_namespaced_deployment(name, namespace, PAUSE)  # someone pauses, a moment too late
            try:
                return super().patch_namespaced_deployment_scale(name, namespace, body, **kw)
            except ApiException as exc:
                answers.append(exc.status)
                raise

    monkeypatch.setattr(k8s, "apps", lambda: Interfering(k8s.api_client()))
    tick = scaler.tick()
    assert answers == [409], "the scale patch was not refused: it carried no resourceVersion precondition"
    assert tick is not None and not tick.patched and tick.decision.reason == PAUSED, tick
    assert replicas(apps_v1, namespace) == 3
