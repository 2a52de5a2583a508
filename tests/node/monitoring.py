"""A real Prometheus in the node tier, configured by the real Prometheus Operator from the chart's own
ServiceMonitor, PodMonitor and PrometheusRule objects -- as in a user's cluster.

* The operator (tools/k8s/build.sh monitoring) runs as a process of the tier against the API server,
  with the admin client certificate; its CRDs come from the same module (the Go module cache).
* Prometheus runs as the pod the operator creates (namespace ``monitoring``), from the locally built
  image, with every ServiceMonitor/PodMonitor/PrometheusRule of every namespace selected, scraping every
  5 s and evaluating every 5 s.
* ``Prom`` queries it from the host through its pod address.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.helpers import Kubectl, wait_until

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "monitoring"


def versions() -> dict[str, str]:
    out = {}
    for line in (REPO / "tools" / "k8s" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def monitoring_bin() -> Path:
    v = versions()
    cache = Path(os.environ.get("HUMANIZER_CACHE") or Path.home() / ".cache" / "humanizer")
    return cache / "monitoring" / f"{v['PROMETHEUS_VERSION']}-operator{v['PROMETHEUS_OPERATOR_VERSION']}" / "bin"


def operator_crds() -> Path:
    """The Prometheus Operator's CRDs, from its module in the Go module cache (downloaded by the build)."""
    v = versions()["PROMETHEUS_OPERATOR_VERSION"]
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/prometheus-operator/prometheus-operator@{v}"],
        capture_output=True, text=True, check=True, cwd=REPO / "tools" / "monitoring",
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
    )  # fmt: skip
    return Path(json.loads(out.stdout)["Dir"]) / "example" / "prometheus-operator-crd"


def prometheus_objects(image: str, version: str) -> list[dict[str, Any]]:
    meta = {"namespace": NAMESPACE}
    rbac = "rbac.authorization.k8s.io/v1"
    everything: dict[str, Any] = {}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus", **meta}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": "hz:prometheus"},
         "rules": [{"apiGroups": [""], "resources": ["services", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"]},
                   {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": "hz:prometheus"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "hz:prometheus"},
         "subjects": [{"kind": "ServiceAccount", "name": "prometheus", **meta}]},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "metadata": {"name": "hz", **meta},
         "spec": {"image": image, "version": version, "replicas": 1, "serviceAccountName": "prometheus",
                  "scrapeInterval": "5s", "evaluationInterval": "5s",
                  "serviceMonitorSelector": everything, "serviceMonitorNamespaceSelector": everything,
                  "podMonitorSelector": everything, "podMonitorNamespaceSelector": everything,
                  "ruleSelector": everything, "ruleNamespaceSelector": everything,
                  "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}}}},
    ]  # fmt: skip


@dataclass
class Prom:
    """Prometheus' HTTP API from the host."""

    url: str

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=20) as resp:
            body = json.loads(resp.read())
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float = 5) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/targets", state="active")["activeTargets"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/alerts")["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/rules")["groups"])


class Monitoring:
    """Starts and stops the operator process and Prometheus."""

    def __init__(self, node: Any, kubectl: Kubectl) -> None:
        self.node, self.kubectl = node, kubectl
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prom:
        v = versions()
        crds = operator_crds()
        self.kubectl("apply", "--server-side", "-f", str(crds), timeout=120)
        for crd in ("prometheuses", "servicemonitors", "podmonitors", "prometheusrules"):
            # `kubectl wait` fails at once ("status.conditions accessor error") on a CRD the API server has
            # not given a status yet (seen on the node tier): ask again until it is Established
            def established(name: str = f"crd/{crd}.monitoring.coreos.com") -> bool:
                return self.kubectl("wait", "--for=condition=Established", name, "--timeout=10s", check=False,
                                    timeout=20).returncode == 0  # fmt: skip

            wait_until(established, 60, f"the CRD {crd}.monitoring.coreos.com Established", interval=1)
        pki = self.node.pki
        log = (self.node.workdir / "logs" / "prometheus-operator.log").open("ab")
        self.proc = subprocess.Popen(
            [str(monitoring_bin() / "operator"), f"--apiserver={self.node.server}", f"--ca-file={pki / 'ca.crt'}",
             f"--cert-file={pki / 'admin.crt'}", f"--key-file={pki / 'admin.key'}",
             f"--prometheus-config-reloader=localhost/humanizer-prometheus-config-reloader:"
             f"{v['PROMETHEUS_OPERATOR_VERSION']}",
             "--web.listen-address=127.0.0.1:0", "--log-level=warn", "--kubelet-service="],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.kubectl("create", "namespace", NAMESPACE)
        image = f"localhost/humanizer-prometheus:{v['PROMETHEUS_VERSION']}"
        # The module v0.X.Y is Prometheus v3.X.Y: the operator picks its flags by this version.
        version = "v3." + v["PROMETHEUS_VERSION"].removeprefix("v0.").split(".", 1)[0][1:] + ".0"
        self.kubectl.apply(prometheus_objects(image, version))

        def pod() -> dict[str, Any] | None:
            items = json.loads(self.kubectl("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=prometheus",
                                            "-o", "json").stdout)["items"]  # fmt: skip
            ready = [p for p in items if any(c["type"] == "Ready" and c["status"] == "True"
                                             for c in p["status"].get("conditions") or [])]  # fmt: skip
            return ready[0] if ready else None

        try:
            wait_until(lambda: pod() is not None, 180, "the Prometheus pod Ready", interval=1)
        except AssertionError as exc:
            state = self.kubectl("get", "all", "-n", NAMESPACE, "-o", "wide", check=False).stdout
            events = self.kubectl("get", "events", "-n", NAMESPACE, check=False).stdout[-3000:]
            raise AssertionError(f"{exc}\n{state}\n{events}\noperator log: {self.node.workdir / 'logs'}") from None
        ip = pod()["status"]["podIP"]  # type: ignore[index]
        prom = Prom(f"http://{ip}:9090")
        wait_until(lambda: _answers(prom), 60, "Prometheus answering")
        return prom

    def stop(self) -> None:
        self.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=60s", check=False, timeout=90)
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _answers(prom: Prom) -> bool:
    try:
        prom.get("/api/v1/status/buildinfo")
        return True
    except OSError:
        return False


def wait_seconds(seconds: float) -> None:
    time.sleep(seconds)
