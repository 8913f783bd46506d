"""deploy/ci/pod_adapter.py: the rendered chart turned into pods that podman runs on loopback.

The pod tier (make pods) runs these pods for real; these tests pin what the adapter may and may
not change, on every scenario of k8s/qmesh/ci/, without podman.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.tools import ROOT, SCENARIOS, Manifest, named, of_kind

pytestmark = pytest.mark.timeout(900)  # the first test may install the tools


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "ci" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pod_adapter = load("pod_adapter")


def test_free_ports_are_distinct_and_below_the_kernels_ephemeral_range() -> None:
    """A port an outgoing connection may take as its local port is not handed to a server:
    the full scenario's smtpd once found its HTTP port taken that way and crash-looped."""
    floor = pod_adapter.ephemeral_floor()
    assert floor - pod_adapter.LOWEST_PORT >= 1000, "this machine's ephemeral range is unusual"
    ports = [pod_adapter.free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(pod_adapter.LOWEST_PORT <= port < floor for port in ports)


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    (tmp_path / "range").write_text("40000\t60999\n")
    assert pod_adapter.ephemeral_floor(tmp_path / "range") == 40000
    assert pod_adapter.ephemeral_floor(tmp_path / "missing") == 32768


def adapt(objects: list[Manifest], addresses: dict[str, str] | None = None) -> Any:
    ports = itertools.count(41000)
    adapter = pod_adapter.Adapter(
        objects, "localhost/qmesh:test", addresses or {}, allocate=lambda: next(ports)
    )
    adapter.adapt()
    return adapter


def env(pod: Manifest) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def adaptable(rendered: dict[str, list[Manifest]], scenario: str) -> list[Manifest]:
    """The scenario with the Secrets an operator creates (the adapter needs every one)."""
    objects = list(rendered[scenario])
    have = {o["metadata"]["name"] for o in of_kind(objects, "Secret")}
    for workload in of_kind(objects, "Deployment") + of_kind(objects, "Job"):
        for volume in workload["spec"]["template"]["spec"].get("volumes") or []:
            sources = (volume.get("projected") or {}).get("sources") or [volume]
            for source in sources:
                secret = source.get("secret")
                if secret is None:
                    continue
                name = secret.get("name") or secret.get("secretName")
                if name not in have:
                    keys = {i["key"]: "x" for i in secret.get("items") or []}
                    objects.append(
                        {"kind": "Secret", "metadata": {"name": name}, "stringData": keys}
                    )
                    have.add(name)
    return objects


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_one_pod_per_replica_on_the_host_network_with_its_own_loopback_ports(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    objects = adaptable(rendered, scenario)
    adapter = adapt(objects)
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        pods = [p for p in adapter.pods if p.startswith(f"{name}-")]
        assert len(pods) == adapter.replicas(deployment) >= 1
        for pod_name in pods:
            pod = adapter.pods[pod_name]
            assert pod["spec"]["hostNetwork"] is True
            values = env(pod)
            assert values["QMESH_LISTEN_HOST"] == values["QMESH_HTTP_HOST"] == "127.0.0.1"
            for port_name, port in adapter.ports[pod_name].items():
                assert values[f"QMESH_{port_name.upper()}_PORT"] == str(port)
    every = [p for ports in adapter.ports.values() for p in ports.values()]
    assert len(every) == len(set(every)), "two pods share a loopback port"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_security_context_resources_and_arguments_stay_as_rendered(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    objects = adaptable(rendered, scenario)
    adapter = adapt(objects)
    for deployment in of_kind(objects, "Deployment"):
        template = deployment["spec"]["template"]["spec"]
        pod = adapter.pods[f"{deployment['metadata']['name']}-0"]["spec"]
        assert pod["securityContext"] == template["securityContext"]
        before, after = template["containers"][0], pod["containers"][0]
        for key in ("securityContext", "resources", "args", "volumeMounts"):
            assert after.get(key) == before.get(key), key
        assert after["image"] == "localhost/qmesh:test"
        assert after["imagePullPolicy"] == "Never"
        assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(after)


def test_autoscaled_deployments_run_their_minimum(rendered: dict[str, list[Manifest]]) -> None:
    objects = adaptable(rendered, "full")
    adapter = adapt(objects)
    smtpd = named(objects, "Deployment", "ci-qmesh-smtpd")
    assert "replicas" not in smtpd["spec"]  # an HPA owns it in this scenario
    hpa = named(objects, "HorizontalPodAutoscaler", "ci-qmesh-smtpd")
    assert adapter.replicas(smtpd) == hpa["spec"]["minReplicas"]


def test_nats_and_s3_addresses_from_values_are_rewritten(
    rendered: dict[str, list[Manifest]],
) -> None:
    adapter = adapt(
        adaptable(rendered, "dev"),
        {"nats:4222": "127.0.0.1:40001", "minio:9000": "127.0.0.1:40002"},
    )
    values = env(adapter.pods["ci-qmesh-send-0"])
    assert values["QMESH_NATS_URL"] == "nats://127.0.0.1:40001"
    assert values["QMESH_S3_ENDPOINT"] == "127.0.0.1:40002"


def test_the_helm_test_pod_reaches_the_smtpd_service_on_the_first_pods_smtp_port(
    rendered: dict[str, list[Manifest]],
) -> None:
    adapter = adapt(adaptable(rendered, "defaults"))
    (test,) = adapter.tests.values()
    values = env(test)
    assert values["SMTP_HOST"] == "127.0.0.1"
    assert values["SMTP_PORT"] == str(adapter.ports["ci-qmesh-smtpd-0"]["smtp"])


def test_jobs_become_run_once_pods_with_their_backoff_limit(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = adaptable(rendered, "defaults")
    adapter = adapt(objects)
    job = named(objects, "Job", "ci-qmesh-setup")
    pod = adapter.jobs["ci-qmesh-setup"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert adapter.info["ci-qmesh-setup"]["backoffLimit"] == job["spec"]["backoffLimit"]


def test_secrets_become_files_with_the_volume_mode(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    adapter = adapt(adaptable(rendered, "defaults"))
    adapter.write(tmp_path)
    pod = adapter.pods["ci-qmesh-smtpd-0"]
    (credentials,) = [v for v in pod["spec"]["volumes"] if v["name"] == "credentials"]
    root = Path(credentials["hostPath"]["path"])
    password = root / "nats" / "password"
    assert stat.S_IMODE(password.stat().st_mode) == 0o400  # the projected volume's defaultMode
    assert password.read_bytes() == adapter.secrets["ci-qmesh-smtpd-nats"]["password"]
    assert (root / "s3" / "access-key").exists()
    summary = json.loads((tmp_path / "pods.json").read_text())
    assert summary["ci-qmesh-smtpd-0"]["ports"]["smtp"] == adapter.ports["ci-qmesh-smtpd-0"]["smtp"]
    written = json.loads((tmp_path / "pods" / "ci-qmesh-smtpd-0.yaml").read_text())
    assert written["spec"]["hostNetwork"] is True


def test_a_missing_secret_is_named(rendered: dict[str, list[Manifest]]) -> None:
    with pytest.raises(SystemExit, match=r"Secret ci-qmesh-\w+-s3 is not in the rendered"):
        adapt(list(rendered["defaults"]))  # the operator creates the S3 Secrets


def test_a_surge_pod_gets_a_new_name_and_new_ports(rendered: dict[str, list[Manifest]]) -> None:
    adapter = adapt(adaptable(rendered, "defaults"))
    name = adapter.add_replica("ci-qmesh-send")
    assert name == "ci-qmesh-send-2"
    assert adapter.ports[name]["http"] not in {
        adapter.ports["ci-qmesh-send-0"]["http"],
        adapter.ports["ci-qmesh-send-1"]["http"],
    }
