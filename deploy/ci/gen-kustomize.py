"""Render the Helm chart into the kustomize base k8s/base/ (one file per object).

    python deploy/ci/gen-kustomize.py           # rewrite k8s/base/
    python deploy/ci/gen-kustomize.py --check   # exit 1 if k8s/base/ differs from the chart

Values: k8s/kustomize-values.yaml, release `qmesh` in namespace `qmesh`. Helm hooks are left
out and `app.kubernetes.io/managed-by` says kustomize. Needs PyYAML and helm (both from
deploy/ci/k8s-tools.sh; HELM may name the helm binary).
"""

# ruff: noqa: T201 - a command-line script: printing is its output

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s/qmesh"
VALUES = ROOT / "k8s/kustomize-values.yaml"
BASE = ROOT / "k8s/base"
RELEASE = "qmesh"
NAMESPACE = "qmesh"
MANAGED_BY = "app.kubernetes.io/managed-by"
HEADER = "# Generated from k8s/qmesh by deploy/ci/gen-kustomize.py; do not edit.\n"


def helm() -> str:
    default = Path.home() / ".cache/qmesh-k8s-tools/bin/helm"
    found = os.environ.get("HELM") or (str(default) if default.exists() else shutil.which("helm"))
    if not found:
        sys.exit("helm not found: run bash deploy/ci/k8s-tools.sh or set HELM")
    return found


class Dumper(yaml.SafeDumper):
    """Indents lists under their key, as kubectl and helm write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _str)


def relabel(node: Any) -> None:
    """Set every app.kubernetes.io/managed-by label to kustomize, wherever labels appear."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "labels" and isinstance(value, dict) and MANAGED_BY in value:
                value[MANAGED_BY] = "kustomize"
            relabel(value)
    elif isinstance(node, list):
        for item in node:
            relabel(item)


def render() -> dict[str, str]:
    out = subprocess.run(
        [helm(), "template", RELEASE, str(CHART), "-f", str(VALUES), "--namespace", NAMESPACE],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    files: dict[str, str] = {}
    for doc in yaml.safe_load_all(out):
        if not doc:
            continue
        if "helm.sh/hook" in (doc["metadata"].get("annotations") or {}):
            continue
        relabel(doc)
        name = f"{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        if name in files:
            sys.exit(f"two objects would be written to {name}")
        files[name] = HEADER + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=100)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = HEADER + yaml.dump(kustomization, Dumper=Dumper, sort_keys=False)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args()
    want = render()
    have = {p.name: p.read_text() for p in BASE.glob("*.yaml")} if BASE.exists() else {}
    if args.check:
        stale = sorted(n for n in want.keys() | have.keys() if want.get(n) != have.get(n))
        if stale:
            print("k8s/base/ is out of step with the chart: python deploy/ci/gen-kustomize.py")
            print("  differs: " + ", ".join(stale))
            return 1
        return 0
    BASE.mkdir(parents=True, exist_ok=True)
    for name in have.keys() - want.keys():
        (BASE / name).unlink()
    for name, text in want.items():
        (BASE / name).write_text(text)
    print(f"wrote k8s/base/ ({len(want) - 1} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
