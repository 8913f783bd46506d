#!/usr/bin/env bash
# `make pods`: the Helm chart run as pods with podman, one scenario of k8s/qmesh/ci/ after the
# other, every pod on the host network bound to its own 127.0.0.1 ports.
#
#   bash deploy/ci/pod-tier.sh [SCENARIO...]     # default: every k8s/qmesh/ci/*-values.yaml,
#                                                 # then the rolling restart with 300 messages
#   bash deploy/ci/pod-tier.sh rolling [N]        # bench/rolling_restart.py with N (2000)
#
# QMESH_PODS_ROLLING=N sets the messages of the rolling restart in a full run (0: skip it).
#
# Builds the qmesh image with podman from the python:3.11-slim stand-in (deploy/ci/base-image.sh,
# as the compose smoke does), then for each scenario runs deploy/ci/pod_tier.py: render, adapt
# for podman (deploy/ci/pod_adapter.py), play the Deployments' pods, the setup Job and the
# `helm test` pod, and check readiness, the CLI, SMTP in -> POP3 out, relaying refused, and the
# logs. NATS and S3 run on the host, on loopback (nats-server and weed from .venv).
#
# Exit 0 with "SKIP: <why>" where podman cannot run here; 1 when a scenario fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE=${QMESH_PODS_CACHE:-$HOME/.cache/qmesh-pods}
VENV=${VENV:-.venv}
IMAGE=localhost/qmesh:pods
started=$SECONDS

say() { printf '== %s (%ss)\n' "$*" "$((SECONDS - started))"; }
skip() { printf 'SKIP: %s\n' "$*"; exit 0; }

[ -x "$VENV/bin/nats-server" ] && [ -x "$VENV/bin/weed" ] \
  || { echo "FAIL: $VENV has no nats-server or weed: run make setup" >&2; exit 1; }

mkdir -p "$CACHE"

# --- podman, runc (crun fails on cgroups v1/hybrid), catatonit (pod infra), debootstrap -------
need=()
for tool in podman runc catatonit debootstrap; do
  command -v "$tool" >/dev/null || [ -x "/usr/libexec/podman/$tool" ] || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    || skip "${need[*]} missing and this user cannot install them with apt-get"
  say "installing ${need[*]}"
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
           --no-install-recommends "${need[@]}"; } > "$CACHE/apt.log" 2>&1; then
    tail -5 "$CACHE/apt.log"
    skip "apt-get could not install ${need[*]}"
  fi
fi
[ "$(id -u)" = 0 ] || skip "podman kube play with host networking and chowned volumes needs root"

# Default rlimits cannot be set in these containers, and crun cannot run here: use runc.
export CONTAINERS_CONF=$CACHE/containers.conf
cat > "$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
# Images, containers and pods of this tier live in its own store, apart from any other podman use.
export CONTAINERS_STORAGE_CONF=$CACHE/storage.conf
cat > "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "$CACHE/runroot"
EOF
if ! podman info > "$CACHE/podman-info.log" 2>&1; then
  tail -5 "$CACHE/podman-info.log"
  skip "podman does not run on this machine (podman info failed)"
fi

# --- the image ---------------------------------------------------------------------------------
say "making sure the python:3.11-slim stand-in exists (debootstrap on the first run)"
rc=0
bash deploy/ci/base-image.sh podman "$CACHE" || rc=$?
[ "$rc" = 3 ] && skip "debootstrap could not build the base image (no Debian mirror reachable?)"
[ "$rc" = 0 ] || { echo "FAIL: the base image could not be imported" >&2; exit 1; }
say "building $IMAGE from deploy/Dockerfile"
if ! podman build --network host --pull=never -q -f deploy/Dockerfile -t "$IMAGE" . \
    > "$CACHE/build.log" 2>&1; then
  tail -30 "$CACHE/build.log"
  echo "FAIL: podman build of $IMAGE failed" >&2
  exit 1
fi

TOOLS=$(bash deploy/ci/k8s-tools.sh)
if [ "${1:-}" = rolling ]; then
  say "rolling restart under load (${2:-2000} messages)"
  "$TOOLS/venv/bin/python" bench/rolling_restart.py --messages "${2:-2000}" --tools "$TOOLS" \
    --venv "$VENV" --image "$IMAGE" --work "$CACHE/run/rolling"
  say "rolling restart done"
  exit 0
fi
all=0
if [ $# -eq 0 ]; then
  all=1
  set -- $(cd k8s/qmesh/ci && ls -- *-values.yaml | sed 's/-values\.yaml$//')
fi
failed=()
for scenario in "$@"; do
  say "scenario $scenario"
  if ! "$TOOLS/venv/bin/python" deploy/ci/pod_tier.py "$scenario" --tools "$TOOLS" \
      --venv "$VENV" --image "$IMAGE" --work "$CACHE/run/$scenario"; then
    failed+=("$scenario")
  fi
done
if [ "$all" = 1 ] && [ "${QMESH_PODS_ROLLING:-300}" != 0 ]; then
  say "rolling restart under load (${QMESH_PODS_ROLLING:-300} messages; 2000 for the full figure)"
  "$TOOLS/venv/bin/python" bench/rolling_restart.py --messages "${QMESH_PODS_ROLLING:-300}" \
    --tools "$TOOLS" --venv "$VENV" --image "$IMAGE" --work "$CACHE/run/rolling" \
    || failed+=(rolling-restart)
fi
podman image prune -f >/dev/null 2>&1 || true
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED scenarios: ${failed[*]}"
  exit 1
fi
say "every scenario passed or said why it skipped"
