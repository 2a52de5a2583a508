# Sourced by tools/image/build.sh: the Python 3.11 base image, pulled or built locally from Debian.
# ---- the base (Python 3.11 on Debian) --------------------------------------------------------------
# Pullable? Only ask once per run, with a time bound; a short name no registry answers fails at once.
base_image() {
    if [ -n "${PYTHON_IMAGE:-}" ]; then echo "$PYTHON_IMAGE"; return; fi
    local default="python:3.11-slim-bookworm"
    if "$ENGINE" image exists "$default" 2>/dev/null || { [ "${HUMANIZER_LOCAL_BASE:-auto}" != 1 ] &&
            timeout 30 "$ENGINE" pull -q "$default" >/dev/null 2>&1; }; then
        echo "$default"; return
    fi
    # Keyed by this recipe and the host's extra CA certificates only.
    local key; key="$( (cat "$HERE/base.sh"; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null) \
        | sha256sum | cut -c1-12)"
    local ref="localhost/humanizer-base:py3.11-$SUITE-$key"
    if [ "$(content_of "$ref")" = "$key" ]; then echo "$ref"; return; fi
    local tarball="$HUMANIZER_CACHE/image/base-$SUITE-$key.tar"
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || apt_install debootstrap
        local root; root="$(mktemp -d "$HUMANIZER_CACHE/image/.rootfs.XXXXXX")"
        log "base: the registry's $default cannot be pulled; debootstrap $SUITE into $root (~3 min)"
        local start=$SECONDS
        debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
            "$SUITE" "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$root.log" 2>&1 \
            || { tail -20 "$root.log" >&2; rm -rf "$root"; die "debootstrap failed (log above)"; }
        # The host's extra CAs (a TLS-intercepting proxy's) so pip/uv reach the package index in builds.
        if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
            cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
            chroot "$root" update-ca-certificates >/dev/null 2>&1
        fi
        # Shape it like the official python image the Dockerfile expects: /usr/local/bin/python3.11,
        # and pip allowed to install into the system interpreter (no PEP 668 marker).
        ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3.11"
        ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
        rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
            "$root"/usr/share/man/*
        tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$root" "$root.log"
        log "base: root filesystem in $((SECONDS - start))s ($(du -h "$tarball" | cut -f1))"
    fi
    "$ENGINE" import \
        --change "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin" \
        --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
        --change "ENV LANG=C.UTF-8" \
        --change "LABEL dev.humanizer.content=$key" \
        --change 'CMD ["python3"]' "$tarball" "$ref" >/dev/null
    echo "$ref"
}

