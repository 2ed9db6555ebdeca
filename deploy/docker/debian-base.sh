#!/bin/sh
# Build a Python base image for muse's Dockerfile from Debian's packages alone.
#
# For machines that can reach a Debian mirror but no container registry (air-gapped build
# hosts, CI without Docker Hub): debootstrap a minimal Debian with python3 and venv, add this
# machine's CA bundle (so pip in the build stage trusts the same registries this machine
# does, TLS-intercepting proxies included), and `docker import` it. Then:
#
#   docker build --build-arg BASE_IMAGE=<tag> -t muse .
#
# Usage: debian-base.sh TAG            (as root: debootstrap needs it)
# Environment: DOCKER (default: docker), SUITE (bookworm: Python 3.11), MIRROR,
#   CA_BUNDLE (default: /etc/ssl/certs/ca-certificates.crt), WORKDIR (default: a temp dir).
set -eu

tag=${1:?usage: debian-base.sh TAG}
docker=${DOCKER:-docker}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

command -v debootstrap >/dev/null || { echo "debian-base.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "debian-base.sh: debootstrap needs root" >&2; exit 2; }

work=${WORKDIR:-$(mktemp -d)}
rootfs="$work/rootfs"
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

# What an image needs no copy of: package caches and lists, docs, man pages, locales.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/log/* "$rootfs"/tmp/*
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
if [ -f "$ca_bundle" ]; then
    cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi

tar -C "$rootfs" --numeric-owner -c . | "$docker" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
echo "$tag"
