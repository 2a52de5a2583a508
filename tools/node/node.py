#!/usr/bin/env python3
"""The cluster tier's control plane plus one real node, for the node test tier.

A real node on this machine: containerd (its own config, socket and state), runc, a bridge CNI
(``hzbr0``, pods in 10.244.0.0/24), kubelet, kube-proxy (iptables), CoreDNS as a Deployment behind
the ``kube-dns`` Service (10.96.0.10, ``cluster.local`` only, no upstream), and a default StorageClass
backed by static local PersistentVolumes. Images are imported into containerd from podman's storage
(``make image``), never pulled. See docs/node-tier.md.

The node's address is 10.240.0.1 on an interface of its own (``hznode0``, a bridge without ports) that
the tier creates: the API server,
the kubelet and NodePorts listen there, never on the machine's own interfaces, and an iptables guard
drops anything from the pod network that would leave the node.

Host changes (sysctls the kubelet and the CNI set, iptables chains, interfaces, mounts) are recorded
before start (``HostSnapshot``) and restored by ``stop()``; ``HostSnapshot.diff`` says what is left.

    node.py up --dir .run/node      start detached; prints export KUBECONFIG=...
    node.py down --dir .run/node    stop everything it started and restore the host
    node.py status --dir .run/node

Needs root, Debian's containerd, runc, containernetworking-plugins, iptables, iproute2 (installed by
``make node-tools``), and the binaries of tools/k8s/build.sh (groups k8s and node).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools" / "cluster"))

from controlplane import (  # noqa: E402
    ControlPlane,
    ControlPlaneError,
    _issue_cert,
    cache_root,
    free_port,
    pid_alive,
    read_versions,
    rss_bytes,
    tail,
    terminate_pids,
)

NODE_NAME = "hz-node"
NODE_IP = "10.240.0.1"
NODE_IFACE = "hznode0"
BRIDGE = "hzbr0"
POD_CIDR = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"
GUARD_CHAIN = "HZ-NODE-GUARD"
CNI_BIN = Path("/usr/lib/cni")
STORAGE_CLASS = "hz-local"
PV_COUNT = 12
COREDNS_IMAGE = "localhost/humanizer-coredns"
# Where the running node tier's state directory is written: one node tier per machine (it owns the
# node address and interface names), and `node.py down` finds it even when it was started by pytest.
CURRENT = Path("/run/humanizer-node-tier")
# Held (flock) by the process that starts a node tier, until its teardown: the kernel drops it when that
# process dies, however it dies, so a test run's tier recorded while the lock is free was left by a killed run.
LOCK = Path("/run/humanizer-node-tier.lock")

# What the kubelet, kube-proxy and the CNI may change, restored at teardown.
SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes", "net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait", "net/ipv6/conf/all/forwarding",
)  # fmt: skip
IPTABLES = ("iptables", "ip6tables")


def run(*argv: str, check: bool = True, input: bytes | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-800:]}")
    return proc.stdout.decode(errors="replace")


# --------------------------------------------------------------------------------------------
# Host state: what the node changes, and putting it back


def _read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def _iptables_rules(tool: str) -> str:
    """``iptables-save`` without counters, comments or empty tables: the rules as a comparable text.

    A table that holds only its built-in chains with policy ACCEPT and no rule is left out: to the
    kernel it is the same as no table (iptables-nft creates tables on first use)."""
    out = run(f"{tool}-save", check=False)
    tables: list[list[str]] = []
    for line in out.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("*"):
            tables.append([line])
            continue
        if line.startswith(":"):
            line = line.split(" [", 1)[0]
        if tables:
            tables[-1].append(line)
    kept = []
    for table in tables:
        body = [ln for ln in table[1:] if ln != "COMMIT"]
        trivial = all(ln.startswith(":") and ln.endswith(" ACCEPT") for ln in body)
        if not trivial:
            kept.append("\n".join(table))
    return "\n".join(kept) + ("\n" if kept else "")


def _iptables_tables(rules: str) -> set[str]:
    return {line[1:] for line in rules.splitlines() if line.startswith("*")}


def _mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(line.split()[4])
    return points


def _links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


@dataclass
class HostSnapshot:
    """The parts of the host a node changes: sysctls, iptables rules, interfaces, mount points."""

    sysctls: dict[str, str | None]
    iptables: dict[str, str]
    links: list[str]
    mounts: list[str]

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(
            {n: _read_sysctl(n) for n in SYSCTLS},
            {t: _iptables_rules(t) for t in IPTABLES if shutil.which(f"{t}-save")},
            _links(),
            _mounts(),
        )

    def to_json(self) -> dict[str, Any]:
        return {"sysctls": self.sysctls, "iptables": self.iptables, "links": self.links, "mounts": self.mounts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostSnapshot:
        return cls(data["sysctls"], data["iptables"], data["links"], data["mounts"])

    def diff(self, now: HostSnapshot | None = None) -> list[str]:
        """What differs from this snapshot now (empty: the host is as it was)."""
        now = now or HostSnapshot.take()
        out = [f"sysctl {n}: {v} -> {now.sysctls.get(n)}" for n, v in self.sysctls.items() if now.sysctls.get(n) != v]
        for tool, rules in self.iptables.items():
            if now.iptables.get(tool) != rules:
                before, after = set(rules.splitlines()), set(now.iptables.get(tool, "").splitlines())
                extra = sorted(after - before)[:8]
                missing = sorted(before - after)[:8]
                out.append(f"{tool} rules differ: added {extra}, removed {missing}")
        out += [f"new interface {n}" for n in sorted(set(now.links) - set(self.links))]
        out += [f"new mount {m}" for m in sorted(set(now.mounts) - set(self.mounts))]
        return out

    def restore(self, log: Any) -> None:
        """Put the host back: unmount new mounts, delete new interfaces, rules and sysctls as recorded."""
        for point in reversed([m for m in _mounts() if m not in set(self.mounts)]):
            run("umount", "-l", point, check=False)
        for link in sorted(set(_links()) - set(self.links)):
            run("ip", "link", "delete", link, check=False)
        for tool, rules in self.iptables.items():
            now = _iptables_rules(tool)
            if now == rules:
                continue
            # Tables the snapshot does not have: emptied (rules, chains, policies back to ACCEPT).
            for table in _iptables_tables(now) - _iptables_tables(rules):
                run(tool, "-t", table, "-F", check=False)
                run(tool, "-t", table, "-X", check=False)
                for chain in ("INPUT", "FORWARD", "OUTPUT"):
                    run(tool, "-t", table, "-P", chain, "ACCEPT", check=False)
            # The snapshot without counters is a valid restore file (COMMIT lines are kept).
            if rules:
                run(f"{tool}-restore", input=rules.encode(), check=False)
        for name, value in self.sysctls.items():
            if value is not None and _read_sysctl(name) != value:
                with contextlib.suppress(OSError):
                    Path("/proc/sys", name).write_text(value + "\n")
        left = self.diff()
        if left:
            log("host not fully restored: " + "; ".join(left))


# --------------------------------------------------------------------------------------------
# Binaries of the node


@dataclass(frozen=True)
class NodeBinaries:
    node_bin: Path  # kubelet, kube-proxy, crictl, coredns (tools/k8s/build.sh node)

    @classmethod
    def from_cache(cls) -> NodeBinaries:
        v = read_versions()
        default = cache_root() / "node" / (
            f"{v['KUBERNETES_VERSION']}-crictl{v['CRICTL_VERSION']}-coredns{v['COREDNS_VERSION']}"
        ) / "bin"
        return cls(Path(os.environ.get("NODE_BIN") or default))

    def path(self, name: str) -> str:
        if name in ("containerd", "runc"):
            found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
            if not found:
                raise ControlPlaneError(f"{name} not installed: run `make node-tools`")
            return found
        return str(self.node_bin / name)

    def check(self) -> None:
        names = ("kubelet", "kube-proxy", "crictl", "coredns")
        missing = [n for n in names if not os.access(self.node_bin / n, os.X_OK)]
        if missing:
            raise ControlPlaneError(f"node binaries missing in {self.node_bin}: {missing}: run `make node-tools`")
        for n in ("containerd", "runc"):
            self.path(n)
        if not (CNI_BIN / "bridge").exists():
            raise ControlPlaneError(f"CNI plugins missing in {CNI_BIN}: run `make node-tools`")
        for tool in ("iptables", "ip", "mount"):
            if not shutil.which(tool):
                raise ControlPlaneError(f"{tool} missing: run `make node-tools`")


# --------------------------------------------------------------------------------------------
# The cluster with a real node


@dataclass
class NodeCluster(ControlPlane):
    """The control plane of the cluster tier plus a real node (containerd, kubelet, kube-proxy, CNI,
    CoreDNS, local PVs). ``images`` are local image references to import into containerd."""

    images: list[str] = field(default_factory=list)
    node_binaries: NodeBinaries = field(default_factory=NodeBinaries.from_cache)
    startup_timeout: float = 120.0
    snapshot: HostSnapshot | None = None
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return NODE_IP

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def containerd_root(self) -> Path:
        """Images and snapshots: under the cache so imported images survive between runs."""
        return cache_root() / "node" / "containerd"

    def _exe(self, name: str) -> str:
        if name in ("kubelet", "kube-proxy", "containerd"):
            return self.node_binaries.path(name)
        return super()._exe(name)

    # start --------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        if os.geteuid() != 0:
            raise ControlPlaneError("the node tier needs root (containerd, kubelet, iptables, mounts)")
        self.binaries.check()
        self.node_binaries.check()
        self._lock_fd = acquire_tier_lock(LOCK, float(os.environ.get("HUMANIZER_NODE_WAIT_S", "1800")), self.log)
        recover_interrupted_tier(self.log)
        for leftover in (NODE_IFACE, BRIDGE):
            if Path("/sys/class/net", leftover).exists():
                owner = CURRENT.read_text().strip() if CURRENT.exists() else "unknown"
                raise ControlPlaneError(
                    f"interface {leftover} exists: another node tier is running (state in {owner}), or one was "
                    "not torn down: `make node-down` stops it and restores the host"
                )
        CURRENT.write_text(str(self.workdir) + "\n")
        self.snapshot = HostSnapshot.take()
        (self.workdir / "host-snapshot.json").write_text(json.dumps(self.snapshot.to_json()))
        run("ip", "link", "add", NODE_IFACE, "type", "bridge")  # no ports: only holds the address
        run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_IFACE)
        run("ip", "link", "set", NODE_IFACE, "up")
        # Pods talk to each other, to Services and to the node; nothing from the pod network leaves it.
        run("iptables", "-N", GUARD_CHAIN)
        run("iptables", "-A", GUARD_CHAIN, "-s", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP")
        run("iptables", "-A", GUARD_CHAIN, "-d", POD_CIDR, "!", "-i", BRIDGE, "!", "-s", NODE_IP, "-j", "DROP")
        run("iptables", "-I", "FORWARD", "1", "-j", GUARD_CHAIN)
        self.ports.update({k: free_port() for k in ("kubelet", "kubelet-healthz", "proxy-healthz", "proxy-metrics")})

    def _extra_sans(self) -> tuple[str, ...]:
        return (f"IP:{NODE_IP}",)

    def _apiserver_args(self) -> list[str]:
        args = [a for a in super()._apiserver_args() if not a.startswith((
            "--bind-address=", "--advertise-address=", "--authorization-mode=", "--endpoint-reconciler-type=",
        ))]  # fmt: skip
        pki = self.pki
        return [
            *args, f"--bind-address={NODE_IP}", f"--advertise-address={NODE_IP}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={pki / 'admin.crt'}", f"--kubelet-client-key={pki / 'admin.key'}",
        ]  # fmt: skip

    def _start_nodes(self) -> None:
        self._node_pki()
        self._start_containerd()
        self._import_images()
        self._write_cni()
        self._launch("kubelet", self._kubelet_args())
        self._launch("kube-proxy", [f"--config={self._kube_proxy_config()}", "--v=1"])
        self._wait("kubelet", lambda: self._nodes_ready(1), what="node Ready")
        self._apply_cluster_addons()
        self._wait("kubelet", self._coredns_ready, what="CoreDNS Ready")

    def _node_pki(self) -> None:
        pki = self.pki
        _issue_cert(
            pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n",
        )  # fmt: skip
        _issue_cert(
            pki, "kubelet-serving", f"/O=system:nodes/CN=system:node:{NODE_NAME}",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{NODE_IP},DNS:{NODE_NAME}\n",
        )  # fmt: skip
        for key in pki.glob("*.key"):
            key.chmod(0o600)
        cfg = json.loads(self.kubeconfig.read_text())
        cfg["users"] = [{"name": NODE_NAME, "user": {
            "client-certificate": str(pki / "kubelet-client.crt"), "client-key": str(pki / "kubelet-client.key")}}]
        cfg["contexts"][0]["context"]["user"] = NODE_NAME
        (self.workdir / "kubelet.kubeconfig").write_text(json.dumps(cfg, indent=2))

    def _start_containerd(self) -> None:
        d = self.workdir / "containerd"
        d.mkdir(parents=True, exist_ok=True)
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        versions = read_versions()
        pause = f"localhost/humanizer-pause:{versions['KUBERNETES_VERSION']}"
        (self.workdir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        config = f"""version = 2
root = "{self.containerd_root}"
state = "{d / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{d / 'containerd.sock.ttrpc'}"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # This session may not lower oom_score_adj (no CAP_SYS_RESOURCE): clamp instead of failing.
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{self.node_binaries.path('runc')}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.workdir / 'cni' / 'net.d'}"
"""
        (d / "config.toml").write_text(config)
        self._launch("containerd", [f"--config={d / 'config.toml'}"])
        self._wait("containerd", lambda: self.ctr("version", check=False) != "", what="serving")

    def ctr(self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 300) -> str:
        return run("ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args,
                   check=check, input=input, timeout=timeout)  # fmt: skip

    def crictl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return run(self.node_binaries.path("crictl"), f"--runtime-endpoint=unix://{self.containerd_socket}",
                   f"--image-endpoint=unix://{self.containerd_socket}", "--timeout=60s", *args,
                   check=check, timeout=timeout)  # fmt: skip

    def _import_images(self) -> None:
        """``podman save | ctr import`` for each image whose podman id changed since the last import."""
        stamps_path = self.containerd_root / "imported.json"
        try:
            stamps = json.loads(stamps_path.read_text())
        except (OSError, ValueError):
            stamps = {}
        have = set(self.ctr("images", "ls", "-q").split())
        env = podman_env()
        for ref in self.images:
            image_id = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", ref], env=env,
                                      capture_output=True, text=True).stdout.strip()  # fmt: skip
            if not image_id:
                raise ControlPlaneError(f"image {ref} is not in podman's storage: run `make image`")
            name = qualified(ref)
            if stamps.get(name) == image_id and name in have:
                continue
            t0 = time.monotonic()
            save = subprocess.Popen(["podman", "save", ref], stdout=subprocess.PIPE, env=env)
            assert save.stdout is not None
            proc = subprocess.run(["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io",
                                   "images", "import", "--no-unpack", "-"], stdin=save.stdout,
                                  capture_output=True)  # fmt: skip
            save.stdout.close()
            if save.wait() != 0 or proc.returncode != 0:
                raise ControlPlaneError(f"importing {ref} into containerd failed: {proc.stderr.decode()[-500:]}")
            # podman saves a short reference as localhost/NAME; the kubelet asks for the normalized name,
            # which must move to the image just imported (an older import may hold that name).
            src = f"localhost/{ref}" if "/" not in ref.split(":")[0] else ref
            if src != name:
                self.ctr("images", "tag", "--force", src, name)
            stamps[name] = image_id
            self.log(f"imported {ref} as {name} in {time.monotonic() - t0:.1f}s")
        stamps_path.write_text(json.dumps(stamps, indent=2))

    def _write_cni(self) -> None:
        conf = {
            "cniVersion": "0.4.0", "name": "hz-node",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.workdir / "cni" / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }  # fmt: skip
        (self.workdir / "cni" / "net.d" / "10-hz-node.conflist").write_text(json.dumps(conf, indent=2))

    def _kubelet_args(self) -> list[str]:
        pki = self.pki
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_IP, "port": self.ports["kubelet"], "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.ports["kubelet-healthz"],
            "tlsCertFile": str(pki / "kubelet-serving.crt"), "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(pki / "ca.crt")}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False, "oomScoreAdj": 0,
            "clusterDNS": [DNS_SERVICE_IP], "clusterDomain": "cluster.local", "resolvConf": "",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "imageServiceEndpoint": f"unix://{self.containerd_socket}",
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            # Images are imported, never pulled: nothing may garbage-collect them.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "maxPods": 110, "rotateCertificates": False,
            "serverTLSBootstrap": False, "protectKernelDefaults": False,
            "shutdownGracePeriod": "0s", "syncFrequency": "10s", "nodeStatusReportFrequency": "10s",
        }  # fmt: skip
        path = self.workdir / "kubelet-config.json"
        path.write_text(json.dumps(config, indent=2))
        return [
            f"--config={path}", f"--kubeconfig={self.workdir / 'kubelet.kubeconfig'}",
            f"--root-dir={self.workdir / 'kubelet'}", f"--node-ip={NODE_IP}", f"--hostname-override={NODE_NAME}",
            f"--cert-dir={self.workdir / 'kubelet-pki'}", "--v=1",
        ]  # fmt: skip

    def _kube_proxy_config(self) -> Path:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "mode": "iptables", "clusterCIDR": CLUSTER_CIDR, "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP, "healthzBindAddress": f"127.0.0.1:{self.ports['proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['proxy-metrics']}",
            # 0: leave the host's conntrack settings alone (it may not set them here anyway).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False}, "nodePortAddresses": [f"{NODE_IP}/32"],
        }  # fmt: skip
        path = self.workdir / "kube-proxy-config.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def _apply_cluster_addons(self) -> None:
        """CoreDNS (Deployment + kube-dns Service + RBAC), the StorageClass and its local PVs."""
        kubectl = str(self.binaries.kubectl)
        docs = addon_objects(self.coredns_image(), self.workdir / "pv")
        proc = subprocess.run([kubectl, f"--kubeconfig={self.kubeconfig}", "apply", "-f", "-"],
                              input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        if proc.returncode != 0:
            raise ControlPlaneError(f"applying the cluster add-ons failed: {proc.stderr}")

    def coredns_image(self) -> str:
        return next((qualified(i) for i in self.images if i.startswith(COREDNS_IMAGE)), COREDNS_IMAGE)

    def _coredns_ready(self) -> bool:
        _, body = self.api("GET", "/apis/apps/v1/namespaces/kube-system/deployments/coredns", ok=(200, 404))
        return bool(body) and isinstance(body, dict) and (body.get("status") or {}).get("readyReplicas", 0) >= 1

    # stop ---------------------------------------------------------------------------------------
    def stop(self, remove: bool = False) -> None:
        teardown_node(self.workdir, self.containerd_socket, self.node_binaries, self.components_pids(), self.log)
        super().stop(remove=False)
        snapshot = self.snapshot or load_snapshot(self.workdir)
        if snapshot is not None:
            snapshot.restore(self.log)
        forget_current(self.workdir)
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def components_pids(self) -> dict[str, tuple[int, str]]:
        return {n: (c.pid, c.argv[0]) for n, c in self.components.items() if c.pid is not None}

    def _write_state(self) -> None:
        super()._write_state()
        state = json.loads((self.workdir / "state.json").read_text())
        state.update(kind="node", detached=self.detached, containerd_socket=str(self.containerd_socket),
                     node_bin=str(self.node_binaries.node_bin))  # fmt: skip
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def teardown_node(
    workdir: Path, socket: Path, binaries: NodeBinaries, pids: dict[str, tuple[int, str]], log: Any
) -> None:
    """Stop the kubelet, remove every pod sandbox (CNI teardown, netns unmounted), stop what is left of
    the containers' shims, then kube-proxy's rules. The control plane stops after this."""
    if "kubelet" in pids:
        terminate_pids({"kubelet": pids["kubelet"]}, grace=10)
    if socket.exists() and "containerd" in pids and pid_alive(*pids["containerd"]):
        crictl = [binaries.path("crictl"), f"--runtime-endpoint=unix://{socket}", "--timeout=30s"]
        # Forced: the kubelet is gone, nothing waits for a grace period (a worker's is 330 s).
        subprocess.run([*crictl, "rmp", "--force", "--all"], capture_output=True, timeout=120)
    # Shims of this containerd (they outlive it by design) and their containers.
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = (proc_dir / "cmdline").read_bytes().split(b"\0")
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in b" ".join(cmd):
                os.kill(int(proc_dir.name), 9)
    if "kube-proxy" in pids:
        terminate_pids({"kube-proxy": pids["kube-proxy"]}, grace=10)
        with contextlib.suppress(Exception):
            subprocess.run([binaries.path("kube-proxy"), "--cleanup"], capture_output=True, timeout=60)
    if "containerd" in pids:
        terminate_pids({"containerd": pids["containerd"]}, grace=15)


def acquire_tier_lock(path: Path, timeout: float, log: Any) -> int:
    """Take the host-wide node-tier lock, waiting up to ``timeout`` s for another run to finish.

    Returns the file descriptor holding it (closed by ``stop``, or by the kernel when this process dies).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    next_note = 0.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            if time.monotonic() >= deadline:
                os.close(fd)
                raise ControlPlaneError(
                    f"another node tier run (pid {holder}) still holds {path} after {timeout:.0f}s; "
                    "one node tier runs per host (HUMANIZER_NODE_WAIT_S sets the wait)"
                ) from None
            if time.monotonic() >= next_note:
                log(f"another node tier run (pid {holder}) holds {path}: waiting for it to finish")
                next_note = time.monotonic() + 60
            time.sleep(1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def read_state(workdir: Path) -> dict[str, Any] | None:
    """The tier's state.json, or None when it was never written (killed during its start) or is unreadable."""
    try:
        return dict(json.loads((workdir / "state.json").read_text()))
    except (OSError, ValueError):
        return None


def abandoned(state: dict[str, Any] | None) -> bool:
    """With the lock held: whether a recorded tier has no owner left and may be torn down.

    A test run's tier is owned by the run that held the lock, so with the lock free its owner is dead, even
    while its components are still exiting (they get SIGTERM when it dies; the API server takes seconds).
    A detached ``make node-up`` tier has no owner: it is abandoned only once none of its processes runs."""
    if state is None or not state.get("detached", True):
        return True
    return not any(pid_alive(int(p["pid"]), str(p["exe"])) for p in state.get("processes", {}).values())


def recover_interrupted_tier(log: Any) -> None:
    """With the lock held, tear down an abandoned tier recorded in ``CURRENT`` (a run killed before its
    teardown leaves interfaces, iptables rules and mounts) and restore the host from its snapshot."""
    if not CURRENT.exists():
        return
    recorded = Path(CURRENT.read_text().strip())
    if not abandoned(read_state(recorded)):
        return
    if not (recorded / "host-snapshot.json").exists():
        return  # nothing to restore from; the interface check reports what is left
    log(f"a node tier left by an interrupted run ({recorded}): tearing it down and restoring the host")
    down(recorded, log)


def forget_current(workdir: Path) -> None:
    with contextlib.suppress(OSError):
        if CURRENT.read_text().strip() == str(workdir):
            CURRENT.unlink()


def load_snapshot(workdir: Path) -> HostSnapshot | None:
    try:
        return HostSnapshot.from_json(json.loads((workdir / "host-snapshot.json").read_text()))
    except (OSError, ValueError, KeyError):
        return None


def qualified(ref: str) -> str:
    """The name the kubelet asks containerd for: ``humanizer:0.1.0`` -> ``docker.io/library/humanizer:0.1.0``."""
    name = ref.split("@")[0]
    first = name.split("/")[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return name
    if "/" not in name:
        return f"docker.io/library/{name}"
    return f"docker.io/{name}"


def podman_env() -> dict[str, str]:
    """podman with the project's configuration (tools/image/env.sh writes it)."""
    d = cache_root() / "containers"
    return {**os.environ, "CONTAINERS_CONF": str(d / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(d / "storage.conf")}


def addon_objects(coredns_image: str, pv_root: Path) -> list[dict[str, Any]]:
    """kube-system's CoreDNS (cluster.local only, no upstream) and the local storage."""
    labels = {"k8s-app": "kube-dns"}
    corefile = (
        "cluster.local:1053 in-addr.arpa:1053 ip6.arpa:1053 {\n"
        "    errors\n    health :8080\n    ready :8181\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n    }\n    cache 30\n    loop\n}\n"
    )
    restricted = {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "runAsUser": 65532, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    container = {
        "name": "coredns", "image": coredns_image, "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [{"containerPort": 1053, "protocol": "UDP", "name": "dns"},
                  {"containerPort": 1053, "protocol": "TCP", "name": "dns-tcp"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
        "securityContext": restricted,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
    }  # fmt: skip
    pod_spec = {
        "serviceAccountName": "coredns", "dnsPolicy": "Default", "priorityClassName": "system-cluster-critical",
        "containers": [container], "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
    }  # fmt: skip
    rbac = "rbac.authorization.k8s.io/v1"
    kube_system = {"namespace": "kube-system"}
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", **kube_system}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": "hz:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": "hz:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "hz:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", **kube_system}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", **kube_system},
         "data": {"Corefile": corefile}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", **kube_system, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": pod_spec}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", **kube_system, "labels": labels},
         "spec": {"clusterIP": DNS_SERVICE_IP, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 1053},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 1053}]}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer",
         "reclaimPolicy": "Retain"},
    ]  # fmt: skip
    for i in range(PV_COUNT):
        objs.append(local_pv(i, pv_root))
    return objs


def local_pv(i: int, pv_root: Path) -> dict[str, Any]:
    """A static local PersistentVolume on the node (directory under the tier's state dir)."""
    path = pv_root / f"pv{i}"
    path.mkdir(parents=True, exist_ok=True)
    return {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"hz-local-pv{i}",
                                                                   "labels": {"humanizer.dev/node-tier": "1"}},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                 "local": {"path": str(path)},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}}},
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Detached mode (make node-up / node-down)


NODE_IMAGES = ("app", "redis", "pause", "coredns", "prometheus", "prometheus-config-reloader", "redis-exporter")


def default_images() -> list[str]:
    """The images of ``make image`` (tools/image/build.sh prints IMAGE= lines)."""
    out = subprocess.run([str(REPO / "tools" / "image" / "build.sh"), *NODE_IMAGES],
                         capture_output=True, text=True, env=podman_env())  # fmt: skip
    if out.returncode != 0:
        raise ControlPlaneError(f"make image failed:\n{out.stderr[-2000:]}")
    return [line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("IMAGE=")]


def down(workdir: Path, log: Any) -> Path:
    """Stop the node tier whose state is in ``workdir`` -- or, when there is none, the one recorded in
    /run/humanizer-node-tier (e.g. left by an interrupted test run) -- and restore the host."""
    if not (workdir / "state.json").exists() and CURRENT.exists():
        recorded = Path(CURRENT.read_text().strip())
        if recorded != workdir and (recorded / "host-snapshot.json").exists():
            log(f"no node tier in {workdir}; stopping the one recorded in {CURRENT}: {recorded}")
            workdir = recorded
    try:
        state = json.loads((workdir / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    pids = {n: (int(p["pid"]), str(p["exe"])) for n, p in state.get("processes", {}).items()}
    order = state.get("order") or list(pids)
    if state:
        binaries = NodeBinaries(Path(state.get("node_bin") or NodeBinaries.from_cache().node_bin))
        teardown_node(workdir, Path(state["containerd_socket"]), binaries, pids, log)
        terminate_pids({n: pids[n] for n in reversed(order) if n in pids})
    snapshot = load_snapshot(workdir)
    if snapshot is not None:
        snapshot.restore(log)
    forget_current(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    return workdir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=REPO / ".run" / "node")
    args = parser.parse_args(argv)
    workdir: Path = args.dir.resolve()

    def log(msg: str) -> None:
        print(f"[node] {msg}", file=sys.stderr)

    try:
        if args.command == "down":
            stopped = down(workdir, log)
            log(f"stopped; host restored; removed {stopped}")
            return 0
        if args.command == "status":
            state = json.loads((workdir / "state.json").read_text()) if (workdir / "state.json").exists() else None
            if not state:
                print(f"not running ({workdir})")
                return 1
            total = 0
            for name, p in state["processes"].items():
                rss = rss_bytes(int(p["pid"]))
                total += rss
                alive = "up" if pid_alive(int(p["pid"]), p["exe"]) else "DOWN"
                print(f"  {name:<24} pid {p['pid']:<8} {alive:<4} rss {rss / 2**20:7.1f} MiB")
            print(f"  {'total':<24} rss {total / 2**20:7.1f} MiB  kubeconfig={state['kubeconfig']}")
            return 0
        if (workdir / "state.json").exists():
            log(f"a node tier state exists in {workdir}: stopping it first")
            down(workdir, log)
        t0 = time.monotonic()
        cluster = NodeCluster(workdir, detached=True, images=default_images(), log=log)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        log(f"node-up: {time.monotonic() - t0:.1f}s; RSS {sum(cluster.memory().values()) / 2**20:.0f} MiB")
        log(f"kubeconfig: {cluster.kubeconfig}")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"export PATH={cluster.binaries.kubectl.parent}:$PATH")
        return 0
    except ControlPlaneError as exc:
        log(f"ERROR: {exc}")
        for log_file in sorted((workdir / "logs").glob("*.log")) if (workdir / "logs").exists() else []:
            if log_file.stat().st_size:
                log(f"--- {log_file.name} ---\n{tail(log_file, 8)}")
        return 1


if __name__ == "__main__":
    sys.exit(main())


