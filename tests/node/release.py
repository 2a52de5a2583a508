"""The chart installed on a real node as the README says, and what the scenarios need to drive it.

``install_release`` follows the README's "Running it on a cluster" commands: a namespace that enforces
the ``restricted`` Pod Security level, the provider key in a Secret, ``helm install`` with the bundled
Redis (persistence on), the API, the workers and the operator. Only the image values differ from the
README: Redis comes from the locally built Debian image (no registry here), and its exporter sidecar
is off (no exporter image can be had here yet). The provider is the fake OpenAI-compatible server, run
from the project's own image as a pod behind a Service (``fake-llm``), reached through cluster DNS.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.helpers import Kubectl, KubeTool, wait_until

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "humanizer"
NAMESPACE = "humanizer"
RELEASE = "humanizer"
APP_IMAGE_REPOSITORY = "humanizer"
FAKE_LLM_PORT = 8089
FAKE_LLM_URL = f"http://fake-llm:{FAKE_LLM_PORT}/v1"

# The provider: the in-cluster fake server, with the key from the Secret the README creates; a model
# with a list price, so that the cost metrics and panels have data.
PROVIDER_VALUES = [
    "--set", "provider.name=openai", "--set", "provider.openai.existingSecret=openai",
    "--set", f"provider.openai.baseUrl={FAKE_LLM_URL}", "--set", "provider.openai.model=gpt-4o-mini",
]  # fmt: skip
# The only image values that differ from the README's install on the node tier: Redis comes from the
# locally built Debian image (no registry here) and its exporter sidecar is off (no exporter image).
REDIS_IMAGE_REPOSITORY, REDIS_IMAGE_TAG = "localhost/humanizer-redis", "bookworm"
NODE_IMAGE_VALUES = [
    "--set", f"redis.image.repository={REDIS_IMAGE_REPOSITORY}", "--set", f"redis.image.tag={REDIS_IMAGE_TAG}",
    "--set", "redis.metrics.enabled=false",
]  # fmt: skip


def app_image_tag() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in pyproject.toml")


@dataclass
class Release:
    """A helm release on the node tier: kubectl/helm bound to its namespace, and small queries."""

    kubectl: Kubectl
    helm: KubeTool
    namespace: str = NAMESPACE
    name: str = RELEASE
    app_image: str = f"{APP_IMAGE_REPOSITORY}:{app_image_tag()}"
    timings: dict[str, float] = field(default_factory=dict)

    # queries ------------------------------------------------------------------------------------
    def k(self, *args: str, **kw: Any) -> str:
        return self.kubectl(*args, "-n", self.namespace, **kw).stdout

    def get(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.k("get", *args, "-o", "json")))

    def selector(self, component: str) -> str:
        return f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}"

    def pods(self, component: str) -> list[dict[str, Any]]:
        return list(self.get("pods", "-l", self.selector(component))["items"])

    def ready_pods(self, component: str) -> list[str]:
        return [p["metadata"]["name"] for p in self.pods(component) if is_ready(p)
                and not p["metadata"].get("deletionTimestamp")]  # fmt: skip

    def deployment(self, component: str) -> dict[str, Any]:
        items = self.get("deployments", "-l", self.selector(component))["items"]
        assert len(items) == 1, f"expected one {component} Deployment, found {[i['metadata']['name'] for i in items]}"
        return dict(items[0])

    def secret_value(self, name: str, key: str) -> str:
        data = self.get("secret", name)["data"]
        return base64.b64decode(data[key]).decode()

    def api_token(self) -> str:
        return self.secret_value(f"{self.name}-api-tokens", "tokens").splitlines()[0]

    def service_url(self, name: str) -> str:
        svc = self.get("service", name)
        port = svc["spec"]["ports"][0]["port"]
        return f"http://{svc['spec']['clusterIP']}:{port}"

    def hj(self, name: str) -> dict[str, Any]:
        proc = self.kubectl("get", "hj", name, "-n", self.namespace, "-o", "json", check=False)
        return dict(json.loads(proc.stdout)) if proc.returncode == 0 else {}

    def wait_phase(self, name: str, timeout: float, phases: tuple[str, ...] = ("Succeeded", "Failed")) -> dict:
        last: dict[str, Any] = {}

        def done() -> bool:
            nonlocal last
            last = self.hj(name).get("status") or {}
            return last.get("phase") in phases

        try:
            wait_until(done, timeout, f"HumanizeJob {name} to reach {phases}", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status {last}\n{self.logs('operator')}") from None
        return last

    def logs(self, component: str, lines: int = 40) -> str:
        out = []
        for pod in self.pods(component)[:3]:
            name = pod["metadata"]["name"]
            proc = self.kubectl("logs", name, "-n", self.namespace, f"--tail={lines}", "--all-containers",
                                check=False)  # fmt: skip
            out.append(f"--- {name} ---\n{proc.stdout[-4000:]}{proc.stderr[-500:]}")
        return "\n".join(out)

    def exec(self, pod: str, *argv: str, container: str | None = None, check: bool = True) -> Any:
        extra = ["-c", container] if container else []
        return self.kubectl("exec", pod, "-n", self.namespace, *extra, "--", *argv, check=check, timeout=60)

    def wait_all_ready(self, timeout: float = 180) -> None:
        def ready() -> bool:
            items = self.get("pods")["items"]
            return bool(items) and all(is_ready(p) for p in items if not p["metadata"].get("deletionTimestamp"))

        try:
            wait_until(ready, timeout, f"every pod in {self.namespace} Ready", interval=1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.k('get', 'pods', '-o', 'wide')}\n{self.k('get', 'events')}") from None

    def dump_on_failure(self) -> None:
        """Print the namespace's state (shows up only when a test failed: pytest captures it)."""
        proc = self.kubectl("get", "all,pvc,hj", "-n", self.namespace, "-o", "wide", check=False)
        print(proc.stdout)


@contextlib.contextmanager
def autoscaling_paused(release: Release) -> Iterator[str]:
    """The worker Deployment with the operator's autoscaling paused (its annotation) for the block: nothing
    scales the workers but the test. Yields the Deployment's name."""
    deployment = release.deployment("worker")["metadata"]["name"]
    release.k("annotate", "deployment", deployment, "humanizer.dev/autoscale-paused=true", "--overwrite")
    try:
        yield deployment
    finally:
        release.k("annotate", "deployment", deployment, "humanizer.dev/autoscale-paused-")


def is_ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def fake_llm_objects(image: str, latency: float = 0.2, faults: list[str] | None = None) -> list[dict[str, Any]]:
    """The fake OpenAI-compatible server from the project's image, restricted-compliant, behind a Service."""
    labels = {"app.kubernetes.io/name": "fake-llm"}
    args = ["fake-llm", "--host", "0.0.0.0", "--port", str(FAKE_LLM_PORT), "--latency", str(latency),
            "--jitter", str(round(latency / 10, 3))]  # fmt: skip
    for f in faults or []:
        args += ["--fault", f]
    container = {
        "name": "fake-llm", "image": image, "args": args,
        "ports": [{"containerPort": FAKE_LLM_PORT, "name": "http"}],
        "readinessProbe": {"tcpSocket": {"port": FAKE_LLM_PORT}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }  # fmt: skip
    pod_spec = {
        "automountServiceAccountToken": False, "containers": [container],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    }  # fmt: skip
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fake-llm", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": pod_spec}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fake-llm", "labels": labels},
         "spec": {"selector": labels, "ports": [{"port": FAKE_LLM_PORT, "targetPort": FAKE_LLM_PORT, "name": "http"}]}},
    ]  # fmt: skip


def install_release(
    kubectl: Kubectl, helm: KubeTool, image_values: list[str], app_image: str, *, namespace: str = NAMESPACE,
    name: str = RELEASE, values: Sequence[str] = (), objects: Sequence[dict[str, Any]] = (), latency: float = 0.2,
) -> Release:
    """The README's install, as a user runs it (see the module docstring for what differs).

    ``image_values``: the helm values naming images this cluster has; ``app_image``: the project's image
    (also the fake model's). Other scenarios' releases: ``namespace``/``name``, more helm ``values``,
    ``objects`` applied in the namespace before ``helm install`` (e.g. a Secret the values name), and the
    fake model's ``latency`` per reply."""
    rel = Release(kubectl, helm, namespace=namespace, name=name, app_image=app_image)
    t0 = time.monotonic()
    kubectl("create", "namespace", rel.namespace)
    kubectl("label", "namespace", rel.namespace, "pod-security.kubernetes.io/enforce=restricted")
    kubectl("create", "secret", "generic", "openai", "-n", rel.namespace, "--from-literal=openai-api-key=test-key")
    kubectl.apply([*fake_llm_objects(app_image, latency=latency), *objects], namespace=rel.namespace)
    try:
        helm("install", rel.name, str(CHART), "-n", rel.namespace, *image_values, *PROVIDER_VALUES, *values,
             "--wait", "--timeout", "5m", timeout=330)  # fmt: skip
    except AssertionError as exc:
        not_ready = [p["metadata"]["name"] for p in rel.get("pods")["items"] if not is_ready(p)]
        logs = "\n".join(rel.kubectl("logs", n, "-n", rel.namespace, "--tail=30", "--all-containers",
                                     check=False).stdout[-3000:] for n in not_ready[:3])  # fmt: skip
        raise AssertionError(
            f"{exc}\n{rel.k('get', 'pods', '-o', 'wide')}\n{rel.k('get', 'events')[-4000:]}\n"
            f"logs of pods not Ready {not_ready}:\n{logs}"
        ) from None
    rel.wait_all_ready()
    rel.timings["install_to_ready_s"] = time.monotonic() - t0
    print(f"\nFIGURE helm install -> every pod Ready: {rel.timings['install_to_ready_s']:.1f}s")
    return rel
