# Sourced by tools/image/build.sh and tools/node/*: cache paths, podman's configuration, apt installs.
# podman's settings are the project's own files under $HUMANIZER_CACHE (CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF): nothing in /etc/containers is changed.
HUMANIZER_CACHE="${HUMANIZER_CACHE:-$HOME/.cache/humanizer}"
export HUMANIZER_CACHE

# apt_install PKG...: install Debian packages that are missing (`apt-get update` once per run).
apt_install() {
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || { echo "needs root to install: ${missing[*]}" >&2; return 1; }
    if [ -z "${HUMANIZER_APT_UPDATED:-}" ]; then
        apt-get update -qq >&2 || return 1
        export HUMANIZER_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# podman_config: write and export the project's containers.conf / storage.conf.
#  - runc, not crun (crun refuses cgroups in hybrid mode), cgroupfs (no systemd), events to a file;
#  - default ulimits within this session's hard limits (else containers fail in setrlimit);
#  - image storage under the cache, so images survive between runs.
podman_config() {
    local dir="$HUMANIZER_CACHE/containers"
    mkdir -p "$dir/storage"
    local nofile nproc
    nofile="$(ulimit -Hn)"; nproc="$(ulimit -Hu)"
    [ "$nofile" = unlimited ] && nofile=1048576
    [ "$nproc" = unlimited ] && nproc=1048576
    [ "$nproc" -gt 32768 ] && nproc=32768
    cat >"$dir/containers.conf.tmp" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
CONF
    cat >"$dir/storage.conf.tmp" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "/run/humanizer-containers"
CONF
    mv "$dir/containers.conf.tmp" "$dir/containers.conf"
    mv "$dir/storage.conf.tmp" "$dir/storage.conf"
    export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
}
