#!/usr/bin/env bash
# `make smoke`: build the image and run the whole cluster from deploy/compose.ci.yaml, then send
# one message by SMTP into the containerised smtpd and read it back by POP3.
#
# Everything stays on loopback: the Docker engine this script starts has no bridge and no
# iptables rules, every container uses the host network bound to 127.0.0.1, and images are
# built with --network host from a python:3.11-slim stand-in made with debootstrap (no image
# can be pulled). Caches (engine data, the base image tarball) live in ~/.cache/qmesh-smoke.
#
# Exit 0 with "SKIP: <why>" where no engine can run here (no root or apt, dockerd does not start,
# debootstrap fails, no free ports); exit 1 when the stack is built but mail does not flow.
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE=${QMESH_SMOKE_CACHE:-$HOME/.cache/qmesh-smoke}
RUN=$(mktemp -d)
PROJECT=qmesh-smoke
COMPOSE_FILE=deploy/compose.ci.yaml
SERVICES=(smtpd send local remote pop3d)
started=$SECONDS
DOCKERD_PID=

say() { printf '== %s (%ss)\n' "$*" "$((SECONDS - started))"; }
skip() { printf 'SKIP: %s\n' "$*"; exit 0; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local rc=$?
  if [ -n "${STACK_UP:-}" ]; then
    if [ "$rc" != 0 ]; then
      compose ps -a >&2 || true
      compose logs --no-color --tail 60 >&2 || true
    fi
    compose --profile admin down -v -t 5 >/dev/null 2>&1 || true
  fi
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
    umount "$CACHE/exec/netns/default" 2>/dev/null || true  # dockerd leaves it mounted
  fi
  rm -rf "$RUN"
  exit "$rc"
}
trap cleanup EXIT

# --- 0. is there a cluster to test? ----------------------------------------------------------
missing=()
for service in "${SERVICES[@]}"; do
  [ -f "services/$service/app.py" ] && [ -f "services/$service/__main__.py" ] || missing+=("$service")
done
if [ ${#missing[@]} -gt 0 ]; then
  skip "not every service exists yet (no services/<name>/app.py and __main__.py for:" \
       "${missing[*]}); the image build, compose stack and SMTP-to-POP3 flow were not run"
fi

# --- 1. tools: a Docker engine, debootstrap, docker-compose ----------------------------------
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v docker >/dev/null; then
  [ "$(id -u)" = 0 ] || skip "dockerd or debootstrap is missing and this user cannot install them"
  say "installing docker.io and debootstrap"
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
           --no-install-recommends docker.io debootstrap; } > "$RUN/apt.log" 2>&1; then
    tail -5 "$RUN/apt.log"
    skip "apt-get could not install docker.io and debootstrap"
  fi
fi
TOOLS=$(bash deploy/ci/k8s-tools.sh)
compose() { "$TOOLS/venv/bin/docker-compose" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }

# Our own engine on our own socket: no bridge, no iptables, nothing but the host network.
mkdir -p "$CACHE"
export DOCKER_HOST="unix://$CACHE/docker.sock"
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (no bridge, no iptables)"
  [ "$(id -u)" = 0 ] || skip "no Docker engine at $DOCKER_HOST and not root to start one"
  rm -f "$CACHE/docker.sock"
  dockerd --host "$DOCKER_HOST" --data-root "$CACHE/docker" --exec-root "$CACHE/exec" \
    --pidfile "$RUN/dockerd.pid" --bridge=none --iptables=false --ip-forward=false \
    --ip-masq=false > "$RUN/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    tail -5 "$RUN/dockerd.log"
    skip "dockerd did not start on this machine"
  fi
fi

# --- 2. base image stand-in and the three images ---------------------------------------------
say "making sure the python:3.11-slim stand-in exists (debootstrap on the first run)"
rc=0
bash deploy/ci/base-image.sh docker "$CACHE" || rc=$?
[ "$rc" = 3 ] && skip "debootstrap could not build the base image (no Debian mirror reachable?)"
[ "$rc" = 0 ] || fail "the base image could not be imported"

build() {  # tag, context, dockerfile
  if ! DOCKER_BUILDKIT=0 docker build --network host -q -t "$1" -f "$3" "$2" \
      > "$RUN/build.log" 2>&1; then
    tail -30 "$RUN/build.log"
    fail "docker build of $1 failed"
  fi
}
say "building qmesh:ci, qmesh-nats:ci, qmesh-s3:ci"
build qmesh:ci . deploy/Dockerfile
build qmesh-nats:ci deploy/ci/images/nats deploy/ci/images/nats/Dockerfile
build qmesh-s3:ci deploy/ci/images/s3 deploy/ci/images/s3/Dockerfile

# --- 3. free loopback ports ------------------------------------------------------------------
# name=offset inside a block of 100 ports; the first block whose ports are all free is used.
OFFSETS="NATS_PORT=22 NATS_HTTP_PORT=23 S3_MASTER_PORT=30 S3_MASTER_GRPC_PORT=31
S3_VOLUME_PORT=32 S3_PORT=33 S3_VOLUME_GRPC_PORT=34 S3_FILER_PORT=35 S3_FILER_GRPC_PORT=36
S3_GRPC_PORT=37 S3_ADMIN_PORT=38 S3_ADMIN_GRPC_PORT=39 S3_WEBDAV_PORT=40 S3_DEBUG_PORT=41
SMTP_PORT=25 SUBMISSION_PORT=58 SMTPS_PORT=46 QMTP_PORT=9 POP3_PORT=10 POP3S_PORT=95
SMTPD_HTTP_PORT=81 SEND_HTTP_PORT=82 LOCAL_HTTP_PORT=83 REMOTE_HTTP_PORT=84
POP3D_HTTP_PORT=85 ADMIN_HTTP_PORT=86"
ports_env=$(python3 - $OFFSETS <<'PY'
import socket, sys
pairs = [a.split("=") for a in sys.argv[1:]]
for base in (37400, 38400, 39400, 36400, 35400):
    ports = {name: base + int(offset) for name, offset in pairs}
    busy = False
    for port in ports.values():
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy = True
                break
    if not busy:
        print(" ".join(f"SMOKE_{name}={port}" for name, port in ports.items()))
        break
PY
)
[ -n "$ports_env" ] || skip "no block of free loopback ports (37400, 38400, ...) on this machine"
for assignment in $ports_env; do export "${assignment?}"; done

# --- 4. the cluster --------------------------------------------------------------------------
say "starting the stack (nats, s3, ${SERVICES[*]}) on 127.0.0.1:${SMOKE_SMTP_PORT%??}xx"
STACK_UP=1
if ! compose up -d --no-build --pull never --wait --wait-timeout 240 > "$RUN/up.log" 2>&1; then
  cat "$RUN/up.log" >&2
  fail "the stack did not become healthy"
fi

admin() {  # the qmesh CLI in a container with the admin NATS user; its output, or the failure
  if ! compose --profile admin run --rm -T admin "$@" > "$RUN/admin.out" 2> "$RUN/admin.err"; then
    cat "$RUN/admin.out" "$RUN/admin.err" >&2
    fail "qmesh $*: failed"
  fi
  sed 's/^/  /' "$RUN/admin.out"
}
say "creating domain and account with the qmesh CLI (admin NATS user)"
admin domain add mx.example.test
printf 'smoke-pw-0123\n' | admin user add smoke@mx.example.test --password-stdin

# --- 5. SMTP in, POP3 out --------------------------------------------------------------------
say "SMTP to 127.0.0.1:$SMOKE_SMTP_PORT, POP3 from 127.0.0.1:$SMOKE_POP3_PORT"
python3 - <<'PY'
import os, poplib, smtplib, sys, time, uuid
from email.message import EmailMessage

smtp_port = int(os.environ["SMOKE_SMTP_PORT"])
pop3_port = int(os.environ["SMOKE_POP3_PORT"])
token = uuid.uuid4().hex

with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
    smtp.ehlo("smoke.example.net")
    smtp.mail("sender@example.net")
    code, text = smtp.rcpt("someone@relay.example.invalid")
    if not 500 <= code < 600:
        sys.exit(f"FAIL: relaying to a foreign domain got {code} {text!r}: open relay")
    print(f"  relay refused: {code} {text.decode(errors='replace')}")
    smtp.rset()
    message = EmailMessage()
    message["From"] = "sender@example.net"
    message["To"] = "smoke@example.test"
    message["Subject"] = f"smoke {token}"
    message.set_content(f"compose smoke test {token}\n")
    refused = smtp.send_message(message, "sender@example.net", ["smoke@example.test"])
    if refused:
        sys.exit(f"FAIL: recipient refused: {refused}")
    print("  accepted by smtpd")

deadline = time.monotonic() + 90
while True:
    try:
        pop = poplib.POP3("127.0.0.1", pop3_port, timeout=30)
        pop.user("smoke@mx.example.test")
        pop.pass_("smoke-pw-0123")
        count, _ = pop.stat()
        found = None
        for n in range(1, count + 1):
            lines = pop.retr(n)[1]
            if any(token.encode() in line for line in lines):
                found = n
        if found:
            pop.dele(found)
            pop.quit()
            print(f"  read back by POP3 after {90 - (deadline - time.monotonic()):.1f}s")
            break
        pop.quit()
    except (OSError, poplib.error_proto) as err:
        last = err
    else:
        last = f"{count} message(s), none with the token"
    if time.monotonic() > deadline:
        sys.exit(f"FAIL: the message did not arrive in the mailbox within 90s ({last})")
    time.sleep(1)
PY

say "mail flowed: SMTP in, POP3 out; relaying refused"
