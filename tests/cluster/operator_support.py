"""Shared scaffolding of the operator tests: the CRD, a local Redis + fake LLM, the operator process,
and a worker Deployment whose pods the pod harness runs as real Celery workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from humanizer.fake_llm.testing import FakeLLMProcess, start_fake_llm_process
from humanizer.local.redis_server import RedisServer, free_port

from .helpers import Kubectl, wait_until

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "manifests" / "crd" / "humanizejobs.yaml"
CHART_CRD_PATH = REPO / "charts" / "humanizer" / "crds" / "humanizejobs.yaml"
EXAMPLES = REPO / "manifests" / "examples"
GROUP, VERSION, PLURAL = "humanizer.dev", "v1alpha1", "humanizejobs"
WORKER_LABELS = {"app.kubernetes.io/name": "humanizer", "app.kubernetes.io/component": "worker"}
WORKER_SELECTOR = ",".join(f"{k}={v}" for k, v in WORKER_LABELS.items())


def install_crd(kubectl: Kubectl) -> None:
    """Apply the CRD from manifests/ and wait until it is Established and served."""
    kubectl("apply", "-f", str(CRD_PATH))
    kubectl("wait", "--for=condition=Established", "crd/humanizejobs.humanizer.dev", "--timeout=30s")

    def served() -> bool:
        return kubectl("get", "humanizejobs", "-A", check=False).returncode == 0

    wait_until(served, 30, "the humanizejobs resource to be served")


@dataclass
class Backend:
    redis: RedisServer
    fake: FakeLLMProcess

    @property
    def env(self) -> dict[str, str]:
        """What the operator and the workers need to share Redis and the provider."""
        return {
            **self.redis.env(),
            "HUMANIZER_PROVIDER": "openai",
            "OPENAI_BASE_URL": self.fake.url,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_MODEL": "fake-model",
            "HUMANIZER_CHUNK_CACHE_TTL_SECONDS": "0",
            "HUMANIZER_RECONCILE_INTERVAL_SECONDS": "0",
            "LOG_FORMAT": "console",
        }

    def redis_client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis.url, decode_responses=True)


@contextlib.contextmanager
def backend(**fake_config: Any) -> Iterator[Backend]:
    redis_server = RedisServer().start()
    try:
        with start_fake_llm_process(**fake_config) as fake:
            yield Backend(redis_server, fake)
    finally:
        redis_server.cleanup()


class OperatorProcess:
    """``python -m humanizer_operator`` against the test cluster, as a local process (kill/restart-able)."""

    def __init__(self, kubeconfig: Path, namespace: str, env: Mapping[str, str], log_path: Path) -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self.env = {**os.environ, **env, "KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": namespace}
        self.log_path = log_path
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        argv = [sys.executable, "-m", "humanizer_operator", "--standalone", f"--namespace={self.namespace}",
                f"--liveness=http://127.0.0.1:{self.health_port}/healthz"]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_until(self.healthy, 60, f"the operator's liveness endpoint (log: {self.log_path})", interval=0.3)
        return self

    def healthy(self) -> bool:
        import urllib.request

        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"the operator exited ({self.proc and self.proc.returncode}):\n{self.logs()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crashed pod would die."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def worker_deployment(
    name: str, env: Mapping[str, str], replicas: int = 1, concurrency: int = 4, grace: int = 60
) -> dict[str, Any]:
    """A worker Deployment as the chart makes it: ``humanizer worker`` (run by the pod harness)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(WORKER_LABELS)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(WORKER_LABELS)},
            "template": {
                "metadata": {"labels": dict(WORKER_LABELS)},
                "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "containers": [{
                        "name": "worker",
                        "image": "humanizer:test",
                        "command": ["humanizer", "worker", "--concurrency", str(concurrency), "--pool", "threads"],
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                    }],
                },
            },
        },
    }


def humanizejob(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HumanizeJob", "metadata": {"name": name}, "spec": dict(spec)}


def get_hj(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(obj)


def hj_status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = get_hj(api, namespace, name)
    return dict((obj or {}).get("status") or {})


def wait_phase(api: client.ApiClient, namespace: str, name: str, phases: set[str], timeout: float,
               operator: OperatorProcess | None = None) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal last
        last = hj_status(api, namespace, name)
        return last.get("phase") in phases

    try:
        wait_until(reached, timeout, f"HumanizeJob {name} to reach {sorted(phases)}", interval=0.5)
    except AssertionError as exc:
        tail = operator.logs()[-4000:] if operator else ""
        raise AssertionError(f"{exc}; status: {last}\noperator log tail:\n{tail}") from None
    return last


def document(paragraphs: int, tag: str = "") -> str:
    """A document of distinct paragraphs (one chunk each with a small chunk budget)."""
    return "\n\n".join(
        f"Paragraph {i}{tag}: it is important to note that the platform leverages robust synergies to "
        f"deliver value number {i * 7} for every stakeholder."
        for i in range(paragraphs)
    )


def load_example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def provider_calls(fake: FakeLLMProcess) -> int:
    return int(fake.stats()["total"])


def wait_for_events(core: client.CoreV1Api, namespace: str, reason: str, timeout: float) -> list[Any]:
    found: list[Any] = []

    def seen() -> bool:
        nonlocal found
        found = [e for e in core.list_namespaced_event(namespace).items if e.reason == reason]
        return bool(found)

    wait_until(seen, timeout, f"an Event with reason {reason} in {namespace}")
    return found


def now() -> float:
    return time.monotonic()
