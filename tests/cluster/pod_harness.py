"""Run the containers of kwok's fake pods as real local processes.

kwok marks scheduled pods Running, but nothing executes in them. ``PodHarness`` watches the pods of
one workload (namespace + label selector) and, for every pod that is Running and not terminating,
starts ONE local process with that pod's container command + args and environment. When the pod
goes away (deleted, terminating, no longer Running) the process is stopped (SIGTERM, then SIGKILL
after a grace period). This is test scaffolding: the kind tier is where images really run.

Usage::

    with PodHarness(core_v1, "ns", "app=worker") as harness:
        harness.wait_for_alive(3, timeout=60)
        assert harness.alive_count() == 3

Environment: literal ``value`` entries (with ``$(VAR)`` expansion), ``valueFrom`` secretKeyRef /
configMapKeyRef (read through the API) and fieldRef (metadata.name/namespace/uid/labels/annotations,
spec.nodeName, spec.serviceAccountName, status.podIP, status.hostIP), and ``envFrom``. By default
the harness process' own environment is the base (so PATH / the virtualenv keep working).

The command is passed through ``translate`` first; the default maps ``humanizer ...`` to
``[sys.executable, "-m", "humanizer.cli", ...]`` and ``python``/``python3`` to ``sys.executable``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

Translate = Callable[[list[str]], list[str]]


def humanizer_command(argv: list[str]) -> list[str]:
    """Default command translation: container commands → local interpreter invocations."""
    if not argv:
        return argv
    head = os.path.basename(argv[0])
    if head == "humanizer":
        return [sys.executable, "-m", "humanizer.cli", *argv[1:]]
    if re.fullmatch(r"python(3(\.\d+)?)?", head):
        return [sys.executable, *argv[1:]]
    return argv


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, unknown kept."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, value)


class PodEnvError(RuntimeError):
    """A pod's environment could not be resolved (missing secret/configmap key, unsupported ref)."""


@dataclass
class PodProcess:
    """One local process standing in for one pod."""

    pod: str
    uid: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def _die_with_parent() -> None:
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class PodHarness:
    """Keep one local process per Running pod matching ``label_selector`` in ``namespace``.

    Args:
        core: a ``kubernetes.client.CoreV1Api``.
        namespace: where the pods live.
        label_selector: e.g. ``"app=worker"`` (the Deployment's selector).
        container: container name to run (default: the pod's first container).
        translate: maps the container command+args to a local argv (default ``humanizer_command``).
        inherit_env: start from this process' environment (True) or from an empty one.
        extra_env: set after the pod's env (e.g. to point a worker at a local Redis).
        cwd: working directory of the processes.
        log_dir: where ``<pod>.log`` files go (default: a new temporary directory).
        grace: seconds between SIGTERM and SIGKILL when a pod goes away.
    """

    def __init__(
        self,
        core: client.CoreV1Api,
        namespace: str,
        label_selector: str,
        *,
        container: str | None = None,
        translate: Translate = humanizer_command,
        inherit_env: bool = True,
        extra_env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        log_dir: str | Path | None = None,
        grace: float = 10.0,
    ) -> None:
        self.core = core
        self.namespace = namespace
        self.label_selector = label_selector
        self.container = container
        self.translate = translate
        self.inherit_env = inherit_env
        self.extra_env = dict(extra_env or {})
        self.cwd = str(cwd) if cwd is not None else None
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="pod-harness-"))
        self.grace = grace
        self.errors: list[str] = []
        self._procs: dict[str, PodProcess] = {}  # pod uid -> process
        self._exited: list[PodProcess] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # public API -----------------------------------------------------------------------------
    def start(self) -> PodHarness:
        """Start watching in a background thread (idempotent)."""
        if self._thread is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name=f"pod-harness-{self.label_selector}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and stop every process."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
        for p in procs:
            self._terminate(p)

    def __enter__(self) -> PodHarness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive_count(self) -> int:
        """Processes currently running."""
        with self._lock:
            return sum(1 for p in self._procs.values() if p.alive)

    def processes(self) -> dict[str, PodProcess]:
        """Pod name → its process (alive or exited but pod still present)."""
        with self._lock:
            return {p.pod: p for p in self._procs.values()}

    def exited(self) -> list[PodProcess]:
        """Processes that exited on their own while their pod was still there."""
        with self._lock:
            return [p for p in self._procs.values() if not p.alive] + list(self._exited)

    def wait_for_alive(self, count: int, timeout: float = 60.0) -> None:
        """Block until exactly ``count`` processes are alive; TimeoutError with details otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_count() == count:
                return
            time.sleep(0.1)
        raise TimeoutError(
            f"pod harness: {self.alive_count()} process(es) alive, wanted {count} after {timeout:.0f}s; "
            f"pods: {sorted(self.processes())}; errors: {self.errors[-5:]}"
        )

    # reconciliation -------------------------------------------------------------------------
    def _run(self) -> None:
        """List + watch loop; every event (and every re-list) reconciles the affected pods."""
        while not self._stopping.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.label_selector)
                self._reconcile_all(pods.items)
                stream = watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.label_selector,
                    resource_version=pods.metadata.resource_version,
                    timeout_seconds=2,
                    _request_timeout=10,
                )
                for event in stream:
                    self._reconcile_pod(event["object"], deleted=event["type"] == "DELETED")
                    if self._stopping.is_set():
                        break
            except Exception as exc:  # keep watching through API hiccups
                if self._stopping.is_set():
                    break
                self.errors.append(f"watch: {exc!r}")
                log.warning("pod harness watch error: %r", exc)
                self._stopping.wait(1.0)

    def _reconcile_all(self, pods: Sequence[Any]) -> None:
        seen = set()
        for pod in pods:
            seen.add(pod.metadata.uid)
            self._reconcile_pod(pod)
        with self._lock:
            gone = [uid for uid in self._procs if uid not in seen]
        for uid in gone:
            self._stop_uid(uid)

    @staticmethod
    def _wanted(pod: Any) -> bool:
        return bool(pod.status and pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None)

    def _reconcile_pod(self, pod: Any, deleted: bool = False) -> None:
        uid = pod.metadata.uid
        if deleted or not self._wanted(pod):
            self._stop_uid(uid)
            return
        with self._lock:
            if uid in self._procs:
                return
        try:
            self._spawn(pod)
        except Exception as exc:
            msg = f"{pod.metadata.name}: cannot start: {exc}"
            if msg not in self.errors:
                self.errors.append(msg)
            log.warning("pod harness: %s", msg)

    def _stop_uid(self, uid: str) -> None:
        with self._lock:
            proc = self._procs.pop(uid, None)
        if proc is not None:
            self._terminate(proc)

    def _spawn(self, pod: Any) -> None:
        spec_container = self._pick_container(pod)
        env = dict(os.environ) if self.inherit_env else {}
        pod_env = self.resolve_env(pod, spec_container)
        env.update(pod_env)
        env.setdefault("HOSTNAME", pod.metadata.name)
        env.update(self.extra_env)
        raw = [expand(a, pod_env) for a in [*(spec_container.command or []), *(spec_container.args or [])]]
        if not raw:
            raise PodEnvError("container has no command/args (image entrypoints are not known locally)")
        argv = self.translate(raw)
        log_path = self.log_dir / f"{pod.metadata.name}.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                argv, env=env, cwd=self.cwd or spec_container.working_dir or None, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )  # fmt: skip
        with self._lock:
            self._procs[pod.metadata.uid] = PodProcess(pod.metadata.name, pod.metadata.uid, argv, env, proc, log_path)
        log.info("pod harness: started pid %d for pod %s", proc.pid, pod.metadata.name)

    def _pick_container(self, pod: Any) -> Any:
        containers = pod.spec.containers or []
        if self.container is None:
            return containers[0]
        for c in containers:
            if c.name == self.container:
                return c
        raise PodEnvError(f"no container named {self.container!r}")

    def _terminate(self, p: PodProcess) -> None:
        if p.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.proc.pid, signal.SIGTERM)
            try:
                p.proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGKILL)
                p.proc.wait(timeout=10)
        else:
            self._exited.append(p)
        log.info("pod harness: stopped process of pod %s (rc=%s)", p.pod, p.proc.returncode)

    # environment ----------------------------------------------------------------------------
    def resolve_env(self, pod: Any, container: Any) -> dict[str, str]:
        """The container's environment as Kubernetes would build it (envFrom, then env)."""
        env: dict[str, str] = {}
        for src in container.env_from or []:
            prefix = src.prefix or ""
            if src.config_map_ref is not None:
                data = self._configmap(src.config_map_ref.name, bool(src.config_map_ref.optional))
            elif src.secret_ref is not None:
                data = self._secret(src.secret_ref.name, bool(src.secret_ref.optional))
            else:
                continue
            env.update({prefix + k: v for k, v in (data or {}).items()})
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = expand(var.value or "", env)
                continue
            value = self._value_from(pod, var.name, var.value_from)
            if value is not None:
                env[var.name] = value
        return env

    def _value_from(self, pod: Any, name: str, vf: Any) -> str | None:
        if vf.secret_key_ref is not None:
            ref = vf.secret_key_ref
            return self._key(
                self._secret(ref.name, bool(ref.optional)), ref.key, bool(ref.optional), f"secret {ref.name}"
            )
        if vf.config_map_key_ref is not None:
            ref = vf.config_map_key_ref
            return self._key(
                self._configmap(ref.name, bool(ref.optional)),
                ref.key,
                bool(ref.optional),
                f"configmap {ref.name}",
            )
        if vf.field_ref is not None:
            return self._field(pod, vf.field_ref.field_path)
        raise PodEnvError(f"env {name}: unsupported valueFrom {vf}")

    @staticmethod
    def _key(data: dict[str, str] | None, key: str, optional: bool, what: str) -> str | None:
        if data is not None and key in data:
            return data[key]
        if optional:
            return None
        raise PodEnvError(f"{what} has no key {key!r}")

    def _secret(self, name: str, optional: bool) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            raise PodEnvError(f"secret {name}: {exc.status} {exc.reason}") from exc
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        data.update(secret.string_data or {})
        return data

    def _configmap(self, name: str, optional: bool) -> dict[str, str] | None:
        try:
            cm = self.core.read_namespaced_config_map(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            raise PodEnvError(f"configmap {name}: {exc.status} {exc.reason}") from exc
        return dict(cm.data or {})

    @staticmethod
    def _field(pod: Any, path: str) -> str:
        md, spec, status = pod.metadata, pod.spec, pod.status
        simple = {
            "metadata.name": md.name,
            "metadata.namespace": md.namespace,
            "metadata.uid": md.uid,
            "spec.nodeName": spec.node_name,
            "spec.serviceAccountName": spec.service_account_name,
            "status.podIP": status.pod_ip if status else None,
            "status.hostIP": status.host_ip if status else None,
        }
        if path in simple:
            return str(simple[path] or "")
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            source = (md.labels if m.group(1) == "labels" else md.annotations) or {}
            return str(source.get(m.group(2), ""))
        raise PodEnvError(f"unsupported fieldRef {path!r}")
