#!/usr/bin/env bash
# Make the python:3.11-slim stand-in that deploy/Dockerfile starts FROM, for an engine that
# cannot pull images: a Debian bookworm root made with debootstrap, imported under that name.
#
#   bash deploy/ci/base-image.sh docker CACHE_DIR   # or: podman CACHE_DIR
#
# The root filesystem is kept as CACHE_DIR/python-3.11-slim.tar, so only the first run on a
# machine pays for debootstrap (about a minute). Used by compose-smoke.sh and pod-tier.sh.
# Exit 0 when the image exists; exit 3 (with the reason on stderr) when debootstrap fails, so
# the caller can skip instead of fail; any other failure is an error.
set -euo pipefail

ENGINE=${1:?usage: base-image.sh docker|podman CACHE_DIR}
CACHE=${2:?usage: base-image.sh docker|podman CACHE_DIR}
IMAGE=python:3.11-slim
TARBALL=$CACHE/python-3.11-slim.tar

"$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1 && exit 0
mkdir -p "$CACHE"
if [ ! -s "$TARBALL" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  rootfs="$work/rootfs"
  if ! debootstrap --variant=minbase \
        --include=python3,python3-pip,python3-venv,ca-certificates bookworm "$rootfs" \
        > "$work/debootstrap.log" 2>&1; then
    tail -5 "$work/debootstrap.log" >&2
    echo "debootstrap could not build the base image (no Debian mirror reachable?)" >&2
    exit 3
  fi
  ln -sf python3 "$rootfs/usr/bin/python"
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  # Registry TLS may be intercepted by a local CA: pip inside builds needs the host's bundle.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
fi
"$ENGINE" import --change 'CMD ["python3"]' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  "$TARBALL" "$IMAGE" >/dev/null
