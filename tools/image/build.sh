#!/usr/bin/env bash
# Build the project's images with podman (docker where an engine runs), cached by content.
#
#   tools/image/build.sh [IMAGE ...]      (default: app redis pause)
#
#   app    the Dockerfile at the repository root -> ${IMAGE_REGISTRY:+$IMAGE_REGISTRY/}humanizer:$IMAGE_TAG
#          (IMAGE_TAG defaults to the project version). The fake OpenAI-compatible server is the same
#          image (`humanizer fake-llm`).
#   redis  Redis from Debian's redis-server, uid 999 like the official image (the chart keeps the
#          official image as its default; the node tier overrides it) -> humanizer-redis:<debian-version>
#   pause  the pod sandbox image: Kubernetes' pause.c compiled static, FROM scratch -> humanizer-pause:<k8s>
#   coredns  the node tier's cluster DNS: the CoreDNS binary of tools/k8s/build.sh node, FROM scratch
#   prometheus, prometheus-config-reloader  the node tier's monitoring: binaries of tools/k8s/build.sh
#          monitoring, FROM scratch, at the paths the Prometheus Operator expects (/bin/...)
#   redis-exporter  the app image running humanizer.monitoring.redis_exporter (where the official
#          redis_exporter image cannot be had; same env vars and metric names)
#
# Where the Dockerfile's base image (PYTHON_IMAGE) cannot be pulled -- no registry reachable, as on the
# test machines -- a base is built locally from Debian packages (debootstrap: python3.11, venv, pip,
# ca-certificates) with the host's extra CA certificates installed, so TLS-intercepting proxies work
# inside the build, and passed as PYTHON_IMAGE. Set PYTHON_IMAGE to use your own base.
#
# Every image carries a label `dev.humanizer.content` with the hash of what it was built from; an image
# whose label matches is not rebuilt (an unchanged tree: a few seconds). podman's storage and the base
# root filesystem live under $HUMANIZER_CACHE (default ~/.cache/humanizer) so they survive between runs.
#
# Prints `IMAGE=<ref>` lines for the images it built or found (make and the node tier read them).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=../k8s/versions.env
source "$REPO/tools/k8s/versions.env"
# shellcheck source=env.sh
source "$HERE/env.sh"

log() { echo "[image] $*" >&2; }
die() { echo "[image] ERROR: $*" >&2; exit 1; }

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/pyproject.toml" | head -1)"
IMAGE_TAG="${IMAGE_TAG:-$VERSION}"
IMAGE_REPOSITORY="${IMAGE_REPOSITORY:-humanizer}"
APP_IMAGE="${IMAGE_REGISTRY:+$IMAGE_REGISTRY/}$IMAGE_REPOSITORY:$IMAGE_TAG"
SUITE=bookworm

# ---- the container engine ------------------------------------------------------------------------
engine_setup() {
    if [ -n "${CONTAINER_ENGINE:-}" ]; then ENGINE="$CONTAINER_ENGINE"
    elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
    else ENGINE=podman; fi
    if [ "$ENGINE" = podman ] && ! command -v podman >/dev/null; then
        [ "$(id -u)" = 0 ] || die "podman is not installed and this is not root: install podman, buildah, runc"
        log "installing podman, buildah, runc, debootstrap (apt-get)"
        apt_install podman buildah runc fuse-overlayfs uidmap debootstrap
    fi
    command -v "$ENGINE" >/dev/null || die "no container engine: install podman (or run a Docker engine)"
    [ "$ENGINE" = podman ] && podman_config
    return 0
}

# content_of IMG: the dev.humanizer.content label of a local image, or nothing.
content_of() {
    "$ENGINE" image inspect --format '{{ index .Config.Labels "dev.humanizer.content" }}' "$1" 2>/dev/null || true
}

hash_files() { (cd "$REPO" && cat "$@" | sha256sum | cut -c1-16); }
hash_tree() { (cd "$REPO" && git ls-files -z --cached --others --exclude-standard -- "$@" \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }

# ---- the base: tools/image/base.sh (base_image) ----------------------------------------------------
# shellcheck source=base.sh
source "$HERE/base.sh"

# ---- the images ------------------------------------------------------------------------------------
build_app() {
    local base; base="$(base_image)"
    local key; key="$(hash_tree Dockerfile .dockerignore pyproject.toml uv.lock README.md service operator)-$(echo "$base" | sha256sum | cut -c1-8)"
    if [ "$(content_of "$APP_IMAGE")" = "$key" ]; then log "app: $APP_IMAGE up to date"; echo "IMAGE=$APP_IMAGE"; return; fi
    log "app: building $APP_IMAGE from the Dockerfile (PYTHON_IMAGE=$base)"
    local start=$SECONDS
    "$ENGINE" build --network host --build-arg "PYTHON_IMAGE=$base" --label "dev.humanizer.content=$key" \
        -t "$APP_IMAGE" -f "$REPO/Dockerfile" "$REPO" >&2
    "$ENGINE" run --rm "$APP_IMAGE" --help >/dev/null || die "app: \`humanizer --help\` fails in $APP_IMAGE"
    log "app: built in $((SECONDS - start))s"
    echo "IMAGE=$APP_IMAGE"
}

build_redis() {
    local base; base="$(base_image)"
    local key; key="$( (cat "$HERE/redis.Containerfile"; echo "$base") | sha256sum | cut -c1-16)"
    local ref="localhost/humanizer-redis:$SUITE"
    if [ "$(content_of "$ref")" = "$key" ]; then log "redis: $ref up to date"; echo "IMAGE=$ref"; return; fi
    log "redis: building $ref from Debian's redis-server"
    "$ENGINE" build --network host --build-arg "BASE=$base" --label "dev.humanizer.content=$key" \
        -t "$ref" -f "$HERE/redis.Containerfile" "$HERE" >&2
    echo "IMAGE=$ref"
}

build_pause() {
    local src; src="$(pause_source)"
    local key; key="$( (cat "$src"; echo "$KUBERNETES_VERSION") | sha256sum | cut -c1-16)"
    local bin="$HUMANIZER_CACHE/image/pause-$key/pause"
    if [ ! -x "$bin" ]; then
        mkdir -p "$(dirname "$bin")"
        gcc -Os -static -DVERSION="$KUBERNETES_VERSION" -o "$bin.tmp" "$src" || die "pause: gcc -static failed"
        strip "$bin.tmp" && mv "$bin.tmp" "$bin"
    fi
    scratch_image pause "$bin" "localhost/humanizer-pause:$KUBERNETES_VERSION" 65535:65535
}

# scratch_image NAME BIN REF [USER]: a FROM-scratch image holding BIN at /bin/NAME as its entrypoint.
scratch_image() {
    local name="$1" bin="$2" ref="$3" user="${4:-65534:65534}"
    [ -x "$bin" ] || die "$name: $bin missing (tools/k8s/build.sh)"
    local key; key="$(sha256sum "$bin" | cut -c1-16)"
    if [ "$(content_of "$ref")" = "$key" ]; then log "$name: $ref up to date"; echo "IMAGE=$ref"; return; fi
    local dir; dir="$(mktemp -d)"
    mkdir -p "$dir/bin" "$dir/tmp"
    cp "$bin" "$dir/bin/$name"
    tar -C "$dir" -cf "$dir/rootfs.tar" bin tmp
    "$ENGINE" import --change "ENTRYPOINT [\"/bin/$name\"]" --change "USER $user" \
        --change "LABEL dev.humanizer.content=$key" "$dir/rootfs.tar" "$ref" >/dev/null
    rm -rf "$dir"
    log "$name: $ref"
    echo "IMAGE=$ref"
}

build_coredns() {
    scratch_image coredns "$HUMANIZER_CACHE/node/$KUBERNETES_VERSION-crictl$CRICTL_VERSION-coredns$COREDNS_VERSION/bin/coredns" \
        "localhost/humanizer-coredns:$COREDNS_VERSION" 65532:65532
}

MONITORING_BIN="$HUMANIZER_CACHE/monitoring/$PROMETHEUS_VERSION-operator$PROMETHEUS_OPERATOR_VERSION/bin"
build_prometheus() {
    scratch_image prometheus "$MONITORING_BIN/prometheus" "localhost/humanizer-prometheus:$PROMETHEUS_VERSION"
}
build_prometheus-config-reloader() {
    scratch_image prometheus-config-reloader "$MONITORING_BIN/prometheus-config-reloader" \
        "localhost/humanizer-prometheus-config-reloader:$PROMETHEUS_OPERATOR_VERSION"
}

build_redis-exporter() {
    local app="$APP_IMAGE" key ref="localhost/humanizer-redis-exporter:$IMAGE_TAG"
    key="$(content_of "$app")"
    [ -n "$key" ] || die "redis-exporter: build the app image first"
    if [ "$(content_of "$ref")" = "$key" ]; then log "redis-exporter: $ref up to date"; echo "IMAGE=$ref"; return; fi
    local dir; dir="$(mktemp -d)"
    printf 'FROM %s\nENTRYPOINT ["python", "-m", "humanizer.monitoring.redis_exporter"]\nCMD []\n' "$app" \
        >"$dir/Containerfile"
    "$ENGINE" build --label "dev.humanizer.content=$key" -t "$ref" -f "$dir/Containerfile" "$dir" >&2
    rm -rf "$dir"
    echo "IMAGE=$ref"
}

# pause.c from the Kubernetes source the cluster tier already downloads (the Go module cache).
pause_source() {
    local dir
    dir="$(cd "$REPO/tools/k8s" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [ -f "$dir/build/pause/linux/pause.c" ] || die "pause.c not found in k8s.io/kubernetes@$KUBERNETES_VERSION ($dir)"
    echo "$dir/build/pause/linux/pause.c"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(app redis pause)
engine_setup
mkdir -p "$HUMANIZER_CACHE/image"
for t in "${targets[@]}"; do
    case "$t" in
        app|redis|pause|coredns|prometheus|prometheus-config-reloader|redis-exporter) "build_$t" ;;
        *) die "unknown image: $t (app, redis, pause, coredns, prometheus, prometheus-config-reloader, redis-exporter)" ;;
    esac
done
