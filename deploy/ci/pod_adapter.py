"""Turn the chart as `helm template` renders it into pods that `podman kube play` runs on loopback.

    python3 deploy/ci/pod_adapter.py RENDERED.yaml OUT_DIR --image qmesh:ci \\
        --address nats:4222=127.0.0.1:39001 --address minio:9000=127.0.0.1:39002

Podman is not Kubernetes. This adapter bridges exactly these gaps and changes nothing else
(security contexts, resources, commands, arguments and env stay as rendered):

- Networking: podman has no Services, cluster DNS or pod IPs. Every pod gets
  ``hostNetwork: true``; each replica gets its own free 127.0.0.1 ports, passed through the
  chart's own ``QMESH_<PORT>_PORT`` env and bound to loopback with ``QMESH_LISTEN_HOST`` and
  ``QMESH_HTTP_HOST``. Services are not run: an env value naming a Service
  (``<svc>[.<ns>[.svc[.cluster.local]]]``) becomes 127.0.0.1, and its sibling ``*_PORT`` the
  loopback port of the Service's target on the first replica. ``--address OLD=NEW`` rewrites
  the NATS and S3 addresses given in values (they live outside the chart).
- Replicas: one Pod per replica of a Deployment (``replicas``; with an HPA or a KEDA
  ScaledObject, their minimum), named ``<deployment>-<n>``.
- Jobs: the pod template of a Job, as a Pod that the caller runs to completion (OUT_DIR/jobs,
  with bare Pods such as an admin pod).
- Secrets and ConfigMaps (``secret``, ``configMap`` and ``projected`` volumes): written as files
  under OUT_DIR/volumes with the volume's mode, owned by the pod's ``runAsUser``, and mounted
  with ``hostPath``; podman 4.3 has no ``projected`` volumes.
- Probes: podman runs them as healthchecks driven by systemd timers, which CI machines lack;
  they are removed, and the caller asks every pod's ``/readyz`` itself. ``preStop`` hooks are
  not run by podman and are removed.
- Images: every container runs ``--image`` (built locally; no registry, so tags and digests in
  values cannot be pulled) with ``imagePullPolicy: Never``.

Writes OUT_DIR/pods/<name>.yaml (Deployments' pods), OUT_DIR/jobs/<name>.yaml (Jobs),
OUT_DIR/tests/<name>.yaml (``helm.sh/hook: test`` pods), OUT_DIR/secrets/<name>/<key> (every
Secret, decoded) and OUT_DIR/pods.json: each pod's component, kind and loopback ports.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import random
import re
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Doc = dict[str, Any]
PortAllocator = Callable[[], int]


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000
_handed_out: set[int] = set()


def ephemeral_floor(source: Path = EPHEMERAL_RANGE) -> int:
    """The lowest port the kernel gives an outgoing connection (32768 where unreadable)."""
    try:
        return int(source.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port free on 127.0.0.1 now, not handed out before by this process, and below the
    kernel's ephemeral range where it can: a port from ``bind(0)`` is one that any outgoing
    connection (a pod's to NATS or S3) may take as its local port before the server it was
    meant for binds it, and that server then fails with "address already in use"."""
    floor = ephemeral_floor()
    for _ in range(1000 if floor - LOWEST_PORT >= 1000 else 0):
        port = random.randrange(LOWEST_PORT, floor)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Adapter:
    """Rendered objects in, podman pods out (see the module docstring)."""

    def __init__(
        self,
        docs: Iterable[Doc],
        image: str,
        addresses: dict[str, str],
        allocate: PortAllocator = free_port,
    ) -> None:
        self.docs = [d for d in docs if d]
        self.image = image
        self.addresses = addresses
        self.allocate = allocate
        self.secrets: dict[str, dict[str, bytes]] = {}
        self.configmaps: dict[str, dict[str, bytes]] = {}
        for doc in self.docs:
            if doc["kind"] == "Secret":
                data = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
                data.update({k: v.encode() for k, v in (doc.get("stringData") or {}).items()})
                self.secrets[doc["metadata"]["name"]] = data
            elif doc["kind"] == "ConfigMap":
                cm = {k: str(v).encode() for k, v in (doc.get("data") or {}).items()}
                self.configmaps[doc["metadata"]["name"]] = cm
        self.pods: dict[str, Doc] = {}
        self.jobs: dict[str, Doc] = {}
        self.tests: dict[str, Doc] = {}
        self.ports: dict[str, dict[str, int]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.files: dict[str, tuple[bytes, int, int]] = {}  # relative path -> data, mode, uid

    # -- replicas --------------------------------------------------------------------------
    def replicas(self, deployment: Doc) -> int:
        if "replicas" in deployment["spec"]:
            return int(deployment["spec"]["replicas"])
        name = deployment["metadata"]["name"]
        for doc in self.docs:
            spec = doc.get("spec") or {}
            if doc["kind"] == "HorizontalPodAutoscaler":
                if spec["scaleTargetRef"]["name"] == name:
                    return int(spec.get("minReplicas", 1))
            elif doc["kind"] == "ScaledObject" and spec["scaleTargetRef"]["name"] == name:
                return max(1, int(spec.get("minReplicaCount", 0)))
        return 1

    # -- the whole run ---------------------------------------------------------------------
    def adapt(self) -> None:
        for doc in self.docs:
            if doc["kind"] == "Deployment":
                name = doc["metadata"]["name"]
                for n in range(self.replicas(doc)):
                    pod = self.pod_from_template(f"{name}-{n}", doc["spec"]["template"])
                    self.info[pod["metadata"]["name"]] = {"deployment": name, "kind": "Deployment"}
                    self.pods[pod["metadata"]["name"]] = pod
            elif doc["kind"] == "Job":
                pod = self.pod_from_template(doc["metadata"]["name"], doc["spec"]["template"])
                self.info[pod["metadata"]["name"]] = {
                    "kind": "Job",
                    "backoffLimit": int(doc["spec"].get("backoffLimit", 6)),
                }
                self.jobs[pod["metadata"]["name"]] = pod
        # Services are resolved once every Deployment pod has its ports.
        for pods in (self.pods, self.jobs):
            for pod in pods.values():
                self.resolve_services(pod)
        for doc in self.docs:
            annotations = doc["metadata"].get("annotations") or {}
            if doc["kind"] != "Pod":
                continue
            pod = self.pod_from_template(doc["metadata"]["name"], doc)
            self.resolve_services(pod)
            if annotations.get("helm.sh/hook") == "test":
                self.info[pod["metadata"]["name"]] = {"kind": "test"}
                self.tests[pod["metadata"]["name"]] = pod
            else:  # a bare Pod, run like a Job's
                self.info[pod["metadata"]["name"]] = {"kind": "Pod", "backoffLimit": 0}
                self.jobs[pod["metadata"]["name"]] = pod

    def add_replica(self, deployment: str) -> str:
        """One more pod of ``deployment`` (a rolling update's surge pod), with its own ports."""
        doc = next(
            d
            for d in self.docs
            if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment
        )
        n = sum(1 for info in self.info.values() if info.get("deployment") == deployment)
        pod = self.pod_from_template(f"{deployment}-{n}", doc["spec"]["template"])
        self.resolve_services(pod)
        name: str = pod["metadata"]["name"]
        self.info[name] = {"deployment": deployment, "kind": "Deployment"}
        self.pods[name] = pod
        return name

    def pod_from_template(self, name: str, template: Doc) -> Doc:
        spec = copy.deepcopy(template["spec"])
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        pod: Doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        }
        spec["hostNetwork"] = True
        for key in ("topologySpreadConstraints", "imagePullSecrets", "serviceAccountName"):
            spec.pop(key, None)
        uid = int((spec.get("securityContext") or {}).get("runAsUser", 0))
        ports: dict[str, int] = {}
        for container in spec["containers"]:
            uid = int((container.get("securityContext") or {}).get("runAsUser", uid))
            container["image"] = self.image
            container["imagePullPolicy"] = "Never"
            for key in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle"):
                container.pop(key, None)
            for port in container.pop("ports", None) or []:
                ports[port["name"]] = self.allocate()
            env = container.setdefault("env", [])
            for item in env:
                match = re.fullmatch(r"QMESH_([A-Z0-9]+)_PORT", item["name"])
                if match and match.group(1).lower() in ports:
                    item["value"] = str(ports[match.group(1).lower()])
                elif "value" in item:
                    item["value"] = self.rewrite_address(str(item["value"]))
            if ports:
                names = {item["name"] for item in env}
                for var in ("QMESH_LISTEN_HOST", "QMESH_HTTP_HOST"):
                    if var not in names:
                        env.append({"name": var, "value": "127.0.0.1"})
        self.ports[name] = ports
        spec["volumes"] = [self.volume(name, v, uid) for v in spec.get("volumes") or []]
        return pod

    def rewrite_address(self, value: str) -> str:
        for old, new in self.addresses.items():
            value = value.replace(old, new)
        return value

    # -- Services --------------------------------------------------------------------------
    def service_target(self, host: str, port: str) -> tuple[str, int] | None:
        """(127.0.0.1, loopback port) for a Service named by ``host`` and port, if it is one."""
        for doc in self.docs:
            if doc["kind"] != "Service":
                continue
            meta = doc["metadata"]
            ns = meta.get("namespace", "default")
            names = {meta["name"], f"{meta['name']}.{ns}", f"{meta['name']}.{ns}.svc"}
            names.add(f"{meta['name']}.{ns}.svc.cluster.local")
            if host not in names:
                continue
            for entry in doc["spec"].get("ports") or []:
                if str(entry["port"]) != port:
                    continue
                target = str(entry.get("targetPort", entry["port"]))
                for pod_name, pod in self.pods.items():
                    labels = pod["metadata"]["labels"]
                    selector = doc["spec"].get("selector") or {}
                    if selector and all(labels.get(k) == v for k, v in selector.items()):
                        ports = self.ports[pod_name]
                        if target in ports:
                            return "127.0.0.1", ports[target]
        return None

    def resolve_services(self, pod: Doc) -> None:
        for container in pod["spec"]["containers"]:
            env = {item["name"]: item for item in container.get("env") or []}
            for name, item in env.items():
                if not name.endswith("_HOST") or "value" not in item:
                    continue
                port_item = env.get(name[: -len("_HOST")] + "_PORT")
                if port_item is None:
                    continue
                target = self.service_target(str(item["value"]), str(port_item["value"]))
                if target is not None:
                    item["value"], port = target
                    port_item["value"] = str(port)

    # -- volumes ---------------------------------------------------------------------------
    def volume(self, pod: str, volume: Doc, uid: int) -> Doc:
        name = volume["name"]
        sources: list[tuple[Doc, dict[str, bytes], str]] = []
        mode = 0o644
        if "secret" in volume:
            src = volume["secret"]
            sources.append(
                (src, self.lookup(self.secrets, src["secretName"], "Secret"), src["secretName"])
            )
            mode = int(src.get("defaultMode", 0o644))
        elif "configMap" in volume:
            src = volume["configMap"]
            sources.append(
                (src, self.lookup(self.configmaps, src["name"], "ConfigMap"), src["name"])
            )
            mode = int(src.get("defaultMode", 0o644))
        elif "projected" in volume:
            mode = int(volume["projected"].get("defaultMode", 0o644))
            for source in volume["projected"]["sources"]:
                if "secret" in source:
                    src = source["secret"]
                    sources.append(
                        (src, self.lookup(self.secrets, src["name"], "Secret"), src["name"])
                    )
                elif "configMap" in source:
                    src = source["configMap"]
                    data = self.lookup(self.configmaps, src["name"], "ConfigMap")
                    sources.append((src, data, src["name"]))
                else:
                    raise SystemExit(f"pod {pod}: projected source {sorted(source)} not supported")
        else:
            return volume
        root = f"volumes/{pod}/{name}"
        for src, data, object_name in sources:
            items = src.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] not in data:
                    raise SystemExit(f"pod {pod}: {object_name} has no key {item['key']}")
                item_mode = int(item.get("mode", mode))
                self.files[f"{root}/{item['path']}"] = (data[item["key"]], item_mode, uid)
        return {"name": name, "hostPath": {"path": root, "type": "Directory"}}

    @staticmethod
    def lookup(objects: dict[str, dict[str, bytes]], name: str, kind: str) -> dict[str, bytes]:
        if name not in objects:
            raise SystemExit(
                f"{kind} {name} is not in the rendered manifests: create it first"
                " (docs/install-kubernetes.md says how)"
            )
        return objects[name]

    # -- output ----------------------------------------------------------------------------
    def write(self, out: Path) -> None:
        out = out.resolve()
        for rel, (data, mode, uid) in self.files.items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode)
            if os.geteuid() == 0:
                os.chown(path, uid, uid)
                for parent in path.relative_to(out / "volumes").parents:
                    if str(parent) != ".":
                        os.chown(out / "volumes" / parent, uid, uid)
        for name, data in self.secrets.items():
            for key, value in data.items():
                path = out / "secrets" / name / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(value)
        for group, pods in (("pods", self.pods), ("jobs", self.jobs), ("tests", self.tests)):
            (out / group).mkdir(parents=True, exist_ok=True)
            for name, pod in pods.items():
                for volume in pod["spec"].get("volumes") or []:
                    if "hostPath" in volume:
                        volume["hostPath"]["path"] = str(out / volume["hostPath"]["path"])
                (out / group / f"{name}.yaml").write_text(json.dumps(pod, indent=1))  # JSON is YAML
        summary = {
            name: {**self.info[name], "ports": self.ports.get(name, {})} for name in self.info
        }
        (out / "pods.json").write_text(json.dumps(summary, indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rendered", type=Path, help="output of helm template (multi-document)")
    parser.add_argument("out", type=Path, help="directory for the pods, files and pods.json")
    parser.add_argument("--image", required=True, help="local image every container runs")
    parser.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="replace OLD (host:port from values) by NEW in every env value",
    )
    args = parser.parse_args(argv)
    import yaml

    addresses = dict(pair.split("=", 1) for pair in args.address)
    docs = list(yaml.safe_load_all(args.rendered.read_text()))
    adapter = Adapter(docs, args.image, addresses)
    adapter.adapt()
    adapter.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
