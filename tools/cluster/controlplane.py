#!/usr/bin/env python3
"""A real Kubernetes control plane as local processes, for the cluster test tier.

Starts etcd, kube-apiserver (RBAC, service-account issuer/keys), kube-controller-manager,
kube-scheduler and kwok (fake nodes; marks scheduled pods Running) on loopback with free ports,
creates fake nodes and writes an admin kubeconfig. No containers run: see docs/cluster-tier.md.

Two ways to use it:

* In-process (pytest): ``with ControlPlane(workdir) as cp: ... cp.kubeconfig ...``.  Children get
  SIGTERM if the Python process dies (PR_SET_PDEATHSIG), and ``stop()`` ends them all.
* Detached (make): ``controlplane.py up --dir .run/cluster`` starts it, writes ``state.json`` with
  the process ids and returns; ``controlplane.py down --dir .run/cluster`` stops it and removes the
  directory.  ``status`` and ``env`` print what is running.

Binaries come from the cache filled by tools/k8s/build.sh (``$HUMANIZER_CACHE``, default
``~/.cache/humanizer``); ``K8S_BIN`` / ``KWOK_BIN`` override the directories.  Standard library
plus the ``openssl`` CLI only.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO / "tools" / "k8s" / "versions.env"
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
KWOK_STAGES = Path(__file__).resolve().parent / "kwok-stages.yaml"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"

# Order matters: started in this order, stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ControlPlaneError(RuntimeError):
    """A component could not be built, started or did not become ready."""


# --------------------------------------------------------------------------------------------
# Locating binaries


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=VALUE pairs of tools/k8s/versions.env."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def cache_root() -> Path:
    return Path(os.environ.get("HUMANIZER_CACHE") or Path.home() / ".cache" / "humanizer")


@dataclass(frozen=True)
class Binaries:
    """Paths of the executables the control plane needs."""

    k8s_bin: Path
    kwok_bin: Path
    helm_bin: Path | None = None

    @classmethod
    def from_cache(cls) -> Binaries:
        versions = read_versions()
        root = cache_root()
        k8s = Path(os.environ.get("K8S_BIN") or root / "k8s" / versions["KUBERNETES_VERSION"] / "bin")
        kwok = Path(os.environ.get("KWOK_BIN") or root / "kwok" / versions["KWOK_VERSION"] / "bin")
        helm = Path(os.environ.get("HELM_BIN") or root / "helm" / versions["HELM_VERSION"] / "bin")
        return cls(k8s, kwok, helm)

    def path(self, name: str) -> Path:
        return (self.kwok_bin if name == "kwok" else self.k8s_bin) / name

    @property
    def kubectl(self) -> Path:
        return self.k8s_bin / "kubectl"

    @property
    def helm(self) -> Path:
        if self.helm_bin is None or not os.access(self.helm_bin / "helm", os.X_OK):
            raise ControlPlaneError(f"helm missing in {self.helm_bin}: run `make cluster-tools`")
        return self.helm_bin / "helm"

    def check(self) -> None:
        missing = [str(self.path(n)) for n in (*COMPONENTS, "kubectl") if not os.access(self.path(n), os.X_OK)]
        if missing:
            raise ControlPlaneError(
                "cluster tier binaries missing: " + ", ".join(missing) + "\n"
                "build them with `make cluster-tools` (tools/k8s/build.sh; a cold build takes 15-30 min)"
            )


# --------------------------------------------------------------------------------------------
# PKI (openssl CLI)


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def _issue_cert(pki: Path, name: str, subject: str, extensions: str) -> None:
    """EC P-256 key + certificate signed by the CA in ``pki``."""
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    (pki / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "365", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=pki,
    )  # fmt: skip


def make_pki(pki: Path, extra_sans: tuple[str, ...] = ()) -> None:
    """CA, apiserver serving cert (127.0.0.1/localhost + ``extra_sans``), admin client cert, SA key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=humanizer-test-ca", "-days", "365",
        "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", "-out", "ca.crt", cwd=pki,
    )  # fmt: skip
    sans = [
        "IP:127.0.0.1", "IP:::1", f"IP:{KUBERNETES_SERVICE_IP}", "DNS:localhost", "DNS:kubernetes",
        "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
        *extra_sans,
    ]  # fmt: skip
    _issue_cert(
        pki, "apiserver", "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(sans)}\n",
    )  # fmt: skip
    _issue_cert(
        pki, "admin", "/O=system:masters/CN=humanizer-admin",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
    )  # fmt: skip
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key", cwd=pki)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for leftover in pki.glob("*.csr"):
        leftover.unlink()
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    """Admin kubeconfig (client cert in system:masters); JSON is valid YAML."""
    cluster = {"server": server, "certificate-authority": str(pki / "ca.crt")}
    user = {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "humanizer", "cluster": cluster}],
        "users": [{"name": "admin", "user": user}],
        "contexts": [{"name": "humanizer", "context": {"cluster": "humanizer", "user": "admin"}}],
        "current-context": "humanizer",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# --------------------------------------------------------------------------------------------
# Small helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """preexec_fn: new session, and SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pid_alive(pid: int, exe: str | None = None) -> bool:
    """Process ``pid`` exists (not a zombie) and, if given, was started from ``exe``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        if exe is not None:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
            return argv0 == exe
        return True
    except (OSError, IndexError):
        return False


def terminate_pids(pids: dict[str, tuple[int, str]], grace: float = 15.0) -> None:
    """Stop each (pid, exe) in the given order: clients first, then the API server, etcd last.

    Each gets SIGTERM, ``grace`` seconds to exit, then SIGKILL.  Stopping in order matters: an API
    server whose etcd is already gone hangs in its graceful shutdown.
    """
    for pid, exe in pids.values():
        if not pid_alive(pid, exe):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if _wait_gone(pid, exe, grace):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, exe, 5.0)


def _wait_gone(pid: int, exe: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, exe):
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap our own children so they do not linger as zombies
        time.sleep(0.05)
    return not pid_alive(pid, exe)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------------------------
# The control plane


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok under ``workdir``.

    ``detached=True`` lets the processes outlive this Python process (used by ``up``).
    """

    workdir: Path
    nodes: int = 1
    binaries: Binaries = field(default_factory=Binaries.from_cache)
    detached: bool = False
    startup_timeout: float = 90.0
    log: Callable[[str], None] = field(default=lambda msg: print(f"[controlplane] {msg}", file=sys.stderr))
    ports: dict[str, int] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)

    # paths ------------------------------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def host(self) -> str:
        """The address the API server listens on and advertises."""
        return "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.ports['apiserver']}"

    # lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every component and wait until the API is ready and the nodes are Ready.

        On any failure every process already started is stopped and ControlPlaneError is raised
        with the failing component's log path and tail.
        """
        self.binaries.check()
        if shutil.which("openssl") is None:
            raise ControlPlaneError("the openssl CLI is needed to create the test PKI")
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        try:
            self.ports = {
                k: free_port() for k in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok")
            }
            self._prepare()
            make_pki(self.pki, self._extra_sans())
            write_kubeconfig(self.kubeconfig, self.server, self.pki)
            self._launch("etcd", self._etcd_args())
            self._wait("etcd", lambda: self._http_ok(f"http://127.0.0.1:{self.ports['etcd']}/health"))
            self._launch("kube-apiserver", self._apiserver_args())
            self._wait("kube-apiserver", lambda: self._api_ok("/readyz"))
            self._launch("kube-controller-manager", self._controller_manager_args())
            self._launch("kube-scheduler", self._scheduler_args())
            self._wait("kube-controller-manager", lambda: self._https_ok(self.ports["controller-manager"]))
            self._wait("kube-scheduler", lambda: self._https_ok(self.ports["scheduler"]))
            self._wait("kube-controller-manager", self._default_serviceaccount_exists, what="default ServiceAccount")
            self._start_nodes()
            self._write_state()
        except BaseException:
            self.stop(remove=False)
            raise
        self.log(f"control plane ready in {time.monotonic() - t0:.1f}s: {self.server} (logs in {self.logs})")

    def _prepare(self) -> None:
        """Hook before the PKI is made (the node flavour sets up its host network here)."""

    def _extra_sans(self) -> tuple[str, ...]:
        """Extra subjectAltNames of the API server's certificate."""
        return ()

    def _start_nodes(self) -> None:
        """Start the node side: kwok and its fake nodes (the node flavour starts a real node)."""
        self._launch("kwok", self._kwok_args())
        self.create_nodes(self.nodes)
        self._wait("kwok", lambda: self._nodes_ready(self.nodes), what=f"{self.nodes} node(s) Ready")

    def stop(self, remove: bool = False) -> None:
        """Stop every component (reverse start order), waiting for each to exit; optionally rm workdir."""
        pids: dict[str, tuple[int, str]] = {}
        for name in reversed(list(self.components)):
            comp = self.components[name]
            if comp.pid is not None:
                pids[name] = (comp.pid, comp.argv[0])
        terminate_pids(pids)
        for comp in self.components.values():
            if comp.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    comp.proc.wait(timeout=5)
        self.components.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / "state.json").unlink()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def memory(self) -> dict[str, int]:
        """RSS in bytes per running component."""
        return {n: rss_bytes(c.pid) for n, c in self.components.items() if c.pid is not None}

    def create_nodes(self, count: int) -> None:
        """Create ``count`` fake nodes (``kwok-node-<i>``) managed by kwok; existing ones are kept."""
        for i in range(count):
            name = f"kwok-node-{i}"
            status, _ = self.api("GET", f"/api/v1/nodes/{name}", ok=(200, 404))
            if status == 200:
                continue
            self.api("POST", "/api/v1/nodes", fake_node(name), ok=(201, 409))

    # API access (stdlib) ------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        """A JSON request to the API server as admin; returns (status, decoded body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        if status not in ok:
            raise ControlPlaneError(f"{method} {path}: HTTP {status}: {raw[:500]!r}")
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    # internals ----------------------------------------------------------------------------------
    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            f"--data-dir={self.workdir / 'etcd'}", "--name=default",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}", "--unsafe-no-fsync=true", "--log-level=warn",
            "--quota-backend-bytes=2147483648",
        ]  # fmt: skip

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true", f"--service-account-issuer={self.server}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            # the `kubernetes` Service cannot point at a loopback address: do not reconcile it
            "--endpoint-reconciler-type=none",
            "--profiling=false", "--v=1",
        ]  # fmt: skip

    def _common_kubeconfig_args(self) -> list[str]:
        kc = str(self.kubeconfig)
        return [
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--profiling=false", "--v=1",
        ]  # fmt: skip

    def _controller_manager_args(self) -> list[str]:
        pki = self.pki
        return [
            *self._common_kubeconfig_args(),
            f"--secure-port={self.ports['controller-manager']}",
            f"--cert-dir={self.workdir / 'controller-manager'}",
            f"--root-ca-file={pki / 'ca.crt'}", f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--controllers=*",
        ]  # fmt: skip

    def _scheduler_args(self) -> list[str]:
        return [
            *self._common_kubeconfig_args(),
            f"--secure-port={self.ports['scheduler']}",
            f"--cert-dir={self.workdir / 'scheduler'}",
        ]

    def _kwok_args(self) -> list[str]:
        key, value = FAKE_NODE_ANNOTATION
        return [
            f"--kubeconfig={self.kubeconfig}", f"--config={KWOK_STAGES}", "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={key}={value}",
            "--cidr=10.244.0.1/16", "--node-ip=10.0.0.1",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
        ]  # fmt: skip

    def _exe(self, name: str) -> str:
        return str(self.binaries.path(name))

    def _launch(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        exe = self._exe(name)
        log = self.logs / f"{name}.log"
        out = log.open("ab")
        try:
            proc = subprocess.Popen(
                [exe, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.workdir, preexec_fn=os.setsid if self.detached else _die_with_parent,
                env={**os.environ, **env} if env else None,
            )  # fmt: skip
        finally:
            out.close()
        self.components[name] = Component(name, [exe, *args], log, proc, proc.pid)
        self.log(f"started {name} (pid {proc.pid}, log {log})")

    def _wait(self, name: str, check: Callable[[], bool], what: str = "ready") -> None:
        comp = self.components[name]
        deadline = time.monotonic() + self.startup_timeout
        last_error = ""
        while time.monotonic() < deadline:
            for other in self.components.values():
                if other.proc is not None and other.proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{other.name} exited with code {other.proc.returncode} (log: {other.log})\n"
                        f"--- last lines of {other.log} ---\n{tail(other.log)}"
                    )
            try:
                if check():
                    return
            except (OSError, ControlPlaneError, ssl.SSLError) as exc:
                last_error = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{name} not {what} after {self.startup_timeout:.0f}s (last error: {last_error or 'none'}; "
            f"log: {comp.log})\n--- last lines of {comp.log} ---\n{tail(comp.log)}"
        )

    @staticmethod
    def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                return bool(resp.status == 200)
        except urllib.error.URLError:
            return False

    def _https_ok(self, port: int) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return self._http_ok(f"https://127.0.0.1:{port}/healthz", ctx)

    def _api_ok(self, path: str) -> bool:
        status, _ = self.api("GET", path, ok=(200, 500, 503))
        return status == 200

    def _default_serviceaccount_exists(self) -> bool:
        status, _ = self.api("GET", "/api/v1/namespaces/default/serviceaccounts/default", ok=(200, 404))
        return status == 200

    def _nodes_ready(self, count: int) -> bool:
        _, body = self.api("GET", "/api/v1/nodes")
        ready = 0
        for node in body.get("items", []):
            conds = node.get("status", {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                ready += 1
        return ready >= count

    def _write_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ports": self.ports,
            "kubectl": str(self.binaries.kubectl),
            "order": list(self.components),
            "processes": {n: {"pid": c.pid, "exe": c.argv[0], "log": str(c.log)} for n, c in self.components.items()},
        }
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def fake_node(name: str) -> dict[str, Any]:
    """A Node object for kwok to manage (annotated kwok.x-k8s.io/node=fake, no taint)."""
    key, value = FAKE_NODE_ANNOTATION
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "", "type": "kwok",
            },
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Detached mode (make cluster-up / cluster-down)


def load_state(workdir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((workdir / "state.json").read_text()))
    except (OSError, ValueError):
        return None


def state_pids(state: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {n: (int(p["pid"]), str(p["exe"])) for n, p in state.get("processes", {}).items()}


def state_alive(state: dict[str, Any]) -> bool:
    pids = state_pids(state)
    return bool(pids) and all(pid_alive(*p) for p in pids.values())


def down(workdir: Path) -> None:
    """Stop the processes recorded in ``workdir/state.json`` and remove ``workdir``."""
    state = load_state(workdir)
    if state is not None:
        pids = state_pids(state)
        names = state.get("order") or [n for n in COMPONENTS if n in pids]
        order = {n: pids[n] for n in reversed(names) if n in pids}
        terminate_pids(order)
        left = [f"{n} ({p[0]})" for n, p in order.items() if pid_alive(*p)]
        if left:
            raise ControlPlaneError(f"could not stop: {', '.join(left)}")
    shutil.rmtree(workdir, ignore_errors=True)


def print_env(state: dict[str, Any]) -> None:
    print(f"export KUBECONFIG={state['kubeconfig']}")
    print(f"export PATH={Path(state['kubectl']).parent}:$PATH")


@contextlib.contextmanager
def _timed(label: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    print(f"[controlplane] {label}: {time.monotonic() - t0:.1f}s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--dir", type=Path, default=REPO / ".run" / "cluster", help="state directory")
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("CLUSTER_NODES", "1")))
    parser.add_argument("--timeout", type=float, default=90.0, help="per-component readiness timeout (s)")
    args = parser.parse_args(argv)
    workdir: Path = args.dir.resolve()
    try:
        if args.command == "down":
            down(workdir)
            print(f"[controlplane] stopped; removed {workdir}", file=sys.stderr)
            return 0
        state = load_state(workdir)
        if args.command == "status":
            if state is None or not state_alive(state):
                print(f"not running ({workdir})")
                return 1
            pids = state_pids(state)
            total = sum(rss_bytes(p[0]) for p in pids.values())
            print(f"running: {state['server']} kubeconfig={state['kubeconfig']}")
            for name, (pid, _) in pids.items():
                print(f"  {name:<24} pid {pid:<8} rss {rss_bytes(pid) / 2**20:7.1f} MiB")
            print(f"  {'total':<24} {'':<12} rss {total / 2**20:7.1f} MiB")
            return 0
        if args.command == "env":
            if state is None:
                print(f"not running ({workdir})", file=sys.stderr)
                return 1
            print_env(state)
            return 0
        # up
        if state is not None and state_alive(state):
            print(f"[controlplane] already running: {state['server']}", file=sys.stderr)
        else:
            down(workdir)  # stale state from a crash: clear it
            with _timed("cluster-up"):
                cp = ControlPlane(workdir, nodes=args.nodes, detached=True, startup_timeout=args.timeout)
                cp.start()
                mem = cp.memory()
                parts = ", ".join(f"{n}={v / 2**20:.0f}" for n, v in mem.items())
                print(f"[controlplane] RSS: {sum(mem.values()) / 2**20:.0f} MiB ({parts})", file=sys.stderr)
            state = load_state(workdir)
            assert state is not None
        print(f"[controlplane] kubeconfig: {state['kubeconfig']}", file=sys.stderr)
        print_env(state)
        return 0
    except ControlPlaneError as exc:
        print(f"[controlplane] ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
