"""The chart's `helm test` pod, run against a real qmesh (chart #2).

The pod's script and environment are taken from the rendered chart; only the smtpd address is
replaced by the loopback listener of ``qmesh up``, which runs with the control files of the
rendered ConfigMap. The pod passes when it exits 0, as `helm test` requires.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.tools import Manifest, Tools, of_kind, pod_spec
from tests.e2e.cluster import start_cluster
from tests.servers import self_signed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # the first test may install the tools


def helm_test_pod(objects: list[Manifest]) -> Manifest:
    pods = [p for p in of_kind(objects, "Pod") if p["metadata"]["annotations"]["helm.sh/hook"]]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def control_files(objects: list[Manifest]) -> dict[str, str]:
    (configmap,) = [
        c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "ci-qmesh-control"
    ]
    data: dict[str, str] = configmap["data"]
    return data


def test_helm_test_pod_passes_against_a_running_qmesh(tools: Tools, tmp_path: Path) -> None:
    """chart #2: the message went with bare LF line ends and smtpd answered 451 (SMTPD-51)."""
    objects = tools.template()
    container = pod_spec(helm_test_pod(objects))["containers"][0]
    assert container["command"] == ["python", "-c"]
    (script,) = container["args"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TEST_RECIPIENT"] == "postmaster@mail.example.com"

    controls = control_files(objects)
    # the TLS Secret, as the chart mounts it in smtpd
    cert, key = self_signed(tmp_path / "tls", controls["me"].strip())
    controls.update(tlscert=f"{cert}\n", tlskey=f"{key}\n")
    cluster = start_cluster(tmp_path / "site", controls)
    try:
        env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(cluster.smtp_port), HOME=str(tmp_path))
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        cluster.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: relay to relay-test@example.invalid refused with 553" in done.stdout
    assert "ok: message to postmaster@mail.example.com accepted" in done.stdout
