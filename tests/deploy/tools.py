"""The pinned chart tools for the deploy tests, and rendering the chart into Python objects.

The tools are the ones `make chart` uses, installed by deploy/ci/k8s-tools.sh into
~/.cache/qmesh-k8s-tools (helm, and a venv whose PyYAML turns YAML into JSON for us).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "qmesh"
SCENARIOS = sorted(
    p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml")
)
SERVICES = ("smtpd", "send", "local", "remote", "pop3d", "imapd", "lists")
# admin's pages (issue 14): a component with no mail listener, no S3 and its own NATS user
WEB = ("webadmin", "webmail")
COMPONENTS = (*SERVICES, *WEB)

Manifest = dict[str, Any]

_YAML_TO_JSON = (
    "import json, sys, yaml\n"
    "json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)\n"
)


class RenderError(Exception):
    """helm template failed; the message is helm's."""


@dataclass(frozen=True)
class Tools:
    helm: Path
    python: Path  # the tools venv's python, with PyYAML

    @classmethod
    def install(cls) -> Tools:
        """Run deploy/ci/k8s-tools.sh (a no-op once installed) and return the tool paths."""
        done = subprocess.run(
            ["bash", str(ROOT / "deploy/ci/k8s-tools.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"deploy/ci/k8s-tools.sh failed:\n{done.stderr[-3000:]}")
        cache = Path(done.stdout.strip().splitlines()[-1])
        return cls(helm=cache / "bin" / "helm", python=cache / "venv" / "bin" / "python")

    def yaml_to_objects(self, text: str) -> list[Manifest]:
        out = subprocess.run(
            [str(self.python), "-c", _YAML_TO_JSON],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        objects: list[Manifest] = json.loads(out.stdout)
        return objects

    def load_yaml(self, path: Path) -> Any:
        docs = self.yaml_to_objects(path.read_text())
        return docs[0] if docs else None

    def template(
        self,
        *values_files: Path,
        sets: dict[str, str] | None = None,
        namespace: str = "mail",
        release: str = "ci",
        show_hooks: bool = True,
    ) -> list[Manifest]:
        args = [str(self.helm), "template", release, str(CHART), "--namespace", namespace]
        for path in values_files:
            args += ["-f", str(path)]
        for key, value in (sets or {}).items():
            args += ["--set", f"{key}={value}"]
        if not show_hooks:
            args.append("--no-hooks")
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RenderError(done.stderr.strip())
        return self.yaml_to_objects(done.stdout)

    def scenario(self, name: str) -> list[Manifest]:
        return self.template(CHART / "ci" / f"{name}-values.yaml")


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Manifest], kind: str, name: str) -> Manifest:
    for o in objects:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise KeyError(f"no {kind} {name}")


def component(o: Manifest) -> str | None:
    labels: dict[str, str] = o["metadata"].get("labels") or {}
    return labels.get("app.kubernetes.io/component")


def pod_spec(o: Manifest) -> Manifest:
    if o["kind"] == "Pod":
        spec: Manifest = o["spec"]
    elif o["kind"] in ("Deployment", "Job"):
        spec = o["spec"]["template"]["spec"]
    else:
        raise ValueError(f"{o['kind']} has no pod spec")
    return spec


def workloads(objects: list[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["kind"] in ("Deployment", "Job", "Pod")]
