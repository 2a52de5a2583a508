#!/usr/bin/env bash
# Build (or reuse) the cluster test tier's binaries, cached by version outside the repo:
#   ${HUMANIZER_CACHE:-$HOME/.cache/humanizer}/k8s/<k8s-version>/bin/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   ${HUMANIZER_CACHE:-$HOME/.cache/humanizer}/kwok/<kwok-version>/bin/kwok
#   ${HUMANIZER_CACHE:-$HOME/.cache/humanizer}/helm/<helm-version>/bin/helm
#   ${HUMANIZER_CACHE:-$HOME/.cache/humanizer}/node/<k8s-version>/bin/{kubelet,kube-proxy,crictl,coredns}
#     (the node tier's real node; group `node`, not built by default)
#   ${HUMANIZER_CACHE:-$HOME/.cache/humanizer}/monitoring/<prometheus>-<operator>/bin/{prometheus,operator,prometheus-config-reloader}
#     (the node tier's Prometheus and Prometheus Operator; group `monitoring`, not built by default)
# Does nothing for a group whose binaries already report the pinned version. Static (CGO_ENABLED=0),
# GOTOOLCHAIN=local, version-stamped via ldflags. The Go build and module caches are the defaults.
#
# Usage: tools/k8s/build.sh [--print-env] [k8s|kwok|helm|node|monitoring ...]   (default: k8s kwok helm)
#   --print-env  only print the cache paths as shell assignments (for make / scripts)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE="${HUMANIZER_CACHE:-$HOME/.cache/humanizer}"
K8S_BIN="$CACHE/k8s/$KUBERNETES_VERSION/bin"
KWOK_BIN="$CACHE/kwok/$KWOK_VERSION/bin"
HELM_BIN="$CACHE/helm/$HELM_VERSION/bin"
MONITORING_BIN="$CACHE/monitoring/$PROMETHEUS_VERSION-operator$PROMETHEUS_OPERATOR_VERSION/bin"
NODE_BIN="$CACHE/node/$KUBERNETES_VERSION-crictl$CRICTL_VERSION-coredns$COREDNS_VERSION/bin"

print_env() {
    echo "K8S_BIN=$K8S_BIN"
    echo "KWOK_BIN=$KWOK_BIN"
    echo "HELM_BIN=$HELM_BIN"
    echo "NODE_BIN=$NODE_BIN"
    echo "MONITORING_BIN=$MONITORING_BIN"
    echo "KUBERNETES_VERSION=$KUBERNETES_VERSION"
}

groups=()
for arg in "$@"; do
    case "$arg" in
        --print-env) print_env; exit 0 ;;
        k8s|kwok|helm|node|monitoring) groups+=("$arg") ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done
[ ${#groups[@]} -gt 0 ] || groups=(k8s kwok helm)

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath"
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || { echo "build.sh: no Go toolchain (expected go on PATH or /usr/local/go/bin)" >&2; exit 1; }

log() { echo "[build.sh] $*" >&2; }

# version_ok BIN EXPECTED ARGS... : BIN exists and its version output contains EXPECTED.
version_ok() {
    local bin="$1" expected="$2"; shift 2
    [ -x "$bin" ] || return 1
    local out
    # Capture first: `bin | grep -q` under pipefail fails at random when grep exits before bin
    # has written everything (SIGPIPE).
    out="$("$bin" "$@" 2>/dev/null)" || return 1
    [[ "$out" == *"$expected"* ]]
}

k8s_ok() {
    local v="$KUBERNETES_VERSION"
    version_ok "$K8S_BIN/kube-apiserver" "Kubernetes $v" --version &&
    version_ok "$K8S_BIN/kube-controller-manager" "Kubernetes $v" --version &&
    version_ok "$K8S_BIN/kube-scheduler" "Kubernetes $v" --version &&
    version_ok "$K8S_BIN/kubectl" "Client Version: $v" version --client &&
    version_ok "$K8S_BIN/etcd" "etcd Version: ${ETCD_VERSION#v}" --version
}

# install_dir SRC DEST: replace DEST by SRC atomically enough (rename), so a half-finished build
# never looks like a valid cache entry.
install_dir() {
    local src="$1" dest="$2"
    mkdir -p "$(dirname "$dest")"
    rm -rf "$dest.old"
    [ -e "$dest" ] && mv "$dest" "$dest.old"
    mv "$src" "$dest"
    rm -rf "$dest.old"
}

build_k8s() {
    if k8s_ok; then log "k8s $KUBERNETES_VERSION: up to date in $K8S_BIN"; return; fi
    grep -qE "^\s*k8s.io/kubernetes $KUBERNETES_VERSION( |\$)" "$HERE/go.mod" &&
        grep -qE "^\s*go.etcd.io/etcd/server/v3 $ETCD_VERSION( |\$)" "$HERE/go.mod" || {
        log "tools/k8s/go.mod does not pin kubernetes $KUBERNETES_VERSION / etcd $ETCD_VERSION:"
        log "run tools/k8s/gen-gomod.py after changing versions.env"; exit 1; }
    local v="$KUBERNETES_VERSION" ld
    ld="$(k8s_ldflags)"
    local tmp; tmp="$(mktemp -d "$CACHE/.k8s-build.XXXXXX")"
    log "k8s $v + etcd $ETCD_VERSION: building into $tmp (cold build: 15-30 min on 2 cores)"
    local start=$SECONDS
    (cd "$HERE" && go build -ldflags "$ld" -o "$tmp/bin/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubectl)
    (cd "$HERE" && go build -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3)
    install_dir "$tmp/bin" "$K8S_BIN"
    rmdir "$tmp"
    k8s_ok || { log "k8s: built binaries do not report $v / etcd $ETCD_VERSION"; exit 1; }
    log "k8s $v: built in $((SECONDS - start))s -> $K8S_BIN"
}

# go_install NAME PKG@VERSION DEST LDFLAGS: module-aware install of a tool at a pinned tag (its own
# go.mod and go.sum apply; checksums are verified against the checksum database).
go_install() {
    local name="$1" pkg="$2" dest="$3" ld="$4"
    local tmp; tmp="$(mktemp -d "$CACHE/.$name-build.XXXXXX")"
    local start=$SECONDS
    log "$name: go install $pkg into $tmp"
    GOBIN="$tmp/bin" GOFLAGS="-trimpath" go install -ldflags "$ld" "$pkg"
    install_dir "$tmp/bin" "$dest"
    rmdir "$tmp"
    log "$name: built in $((SECONDS - start))s -> $dest"
}

build_kwok() {
    if version_ok "$KWOK_BIN/kwok" "${KWOK_VERSION#v}" --version; then
        log "kwok $KWOK_VERSION: up to date in $KWOK_BIN"; return
    fi
    go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "$KWOK_BIN" \
        "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
    version_ok "$KWOK_BIN/kwok" "${KWOK_VERSION#v}" --version || { log "kwok: wrong version"; exit 1; }
}

build_helm() {
    if version_ok "$HELM_BIN/helm" "$HELM_VERSION" version --short; then
        log "helm $HELM_VERSION: up to date in $HELM_BIN"; return
    fi
    go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$HELM_BIN" \
        "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    version_ok "$HELM_BIN/helm" "$HELM_VERSION" version --short || { log "helm: wrong version"; exit 1; }
}

# k8s_ldflags: version-stamped ldflags for binaries of k8s.io/kubernetes.
k8s_ldflags() {
    local v="$KUBERNETES_VERSION" minor major
    major="${v#v}"; major="${major%%.*}"
    minor="${v#v*.}"; minor="${minor%%.*}"
    local ld="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    echo "$ld"
}

node_ok() {
    version_ok "$NODE_BIN/kubelet" "Kubernetes $KUBERNETES_VERSION" --version &&
    version_ok "$NODE_BIN/kube-proxy" "Kubernetes $KUBERNETES_VERSION" --version &&
    version_ok "$NODE_BIN/crictl" "${CRICTL_VERSION#v}" --version &&
    version_ok "$NODE_BIN/coredns" "${COREDNS_VERSION#v}" -version
}

# The real node: kubelet and kube-proxy from the same tools module as the control plane (they share
# its build cache), crictl and CoreDNS by go install at pinned tags.
build_node() {
    if node_ok; then log "node $KUBERNETES_VERSION: up to date in $NODE_BIN"; return; fi
    local tmp; tmp="$(mktemp -d "$CACHE/.node-build.XXXXXX")"
    local start=$SECONDS
    log "node: kubelet, kube-proxy $KUBERNETES_VERSION into $tmp (cold: ~12 min on 2 cores)"
    (cd "$HERE" && go build -ldflags "$(k8s_ldflags)" -o "$tmp/bin/" \
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
    log "node: crictl $CRICTL_VERSION, coredns $COREDNS_VERSION"
    GOBIN="$tmp/bin" GOFLAGS="-trimpath" go install -ldflags "-s -w \
        -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}" \
        "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
    GOBIN="$tmp/bin" GOFLAGS="-trimpath" go install -ldflags "-s -w" \
        "github.com/coredns/coredns@$COREDNS_VERSION"
    install_dir "$tmp/bin" "$NODE_BIN"
    rmdir "$tmp"
    node_ok || { log "node: built binaries do not report their pinned versions"; exit 1; }
    log "node: built in $((SECONDS - start))s -> $NODE_BIN"
}

monitoring_ok() {
    [ -x "$MONITORING_BIN/prometheus" ] && [ -x "$MONITORING_BIN/operator" ] &&
        [ -x "$MONITORING_BIN/prometheus-config-reloader" ] &&
        [ "$(cat "$MONITORING_BIN/.versions" 2>/dev/null)" = "$PROMETHEUS_VERSION $PROMETHEUS_OPERATOR_VERSION" ]
}

# Prometheus by go install (like promtool); the Prometheus Operator and its config reloader from the
# tools/monitoring module (the operator's go.mod replaces its API submodules, so no go install).
build_monitoring() {
    if monitoring_ok; then log "monitoring: up to date in $MONITORING_BIN"; return; fi
    grep -qE "^\s*github.com/prometheus-operator/prometheus-operator $PROMETHEUS_OPERATOR_VERSION( |\$)" \
        "$HERE/../monitoring/go.mod" || { log "tools/monitoring/go.mod does not pin $PROMETHEUS_OPERATOR_VERSION"; exit 1; }
    local tmp; tmp="$(mktemp -d "$CACHE/.monitoring-build.XXXXXX")"
    local start=$SECONDS
    log "monitoring: prometheus $PROMETHEUS_VERSION, prometheus-operator $PROMETHEUS_OPERATOR_VERSION (cold: ~5 min)"
    GOBIN="$tmp/bin" GOFLAGS="-trimpath" go install -ldflags "-s -w" \
        "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
    (cd "$HERE/../monitoring" && go build -ldflags "-s -w" -o "$tmp/bin/" \
        github.com/prometheus-operator/prometheus-operator/cmd/operator \
        github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader)
    echo "$PROMETHEUS_VERSION $PROMETHEUS_OPERATOR_VERSION" >"$tmp/bin/.versions"
    install_dir "$tmp/bin" "$MONITORING_BIN"
    rmdir "$tmp"
    log "monitoring: built in $((SECONDS - start))s -> $MONITORING_BIN"
}

mkdir -p "$CACHE"
for g in "${groups[@]}"; do "build_$g"; done
