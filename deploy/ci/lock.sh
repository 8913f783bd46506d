#!/usr/bin/env bash
# Regenerate deploy/constraints.txt: install qmesh into a scratch venv (from a copy of the tree,
# so nothing is built inside the working copy) and record every installed version.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/src"
cp -r "$root/pyproject.toml" "$root/README.md" "$root/qmesh" "$root/services" "$scratch/src/"
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install -q --disable-pip-version-check "$scratch/src" >/dev/null 2>&1
{
  sed -n '1,/^# Regenerate/p' "$root/deploy/constraints.txt"
  "$scratch/venv/bin/pip" freeze --exclude qmesh 2>/dev/null | grep -v '^WARNING'
} > "$scratch/constraints.txt"
mv "$scratch/constraints.txt" "$root/deploy/constraints.txt"
echo "deploy/constraints.txt: $(grep -vc '^#' "$root/deploy/constraints.txt") packages"
