"""The chart's values: impossible combinations fail, switches render what they promise, every
value is documented, and the generated files (schema, kustomize base, compose server
configuration) are in step with their sources.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from qmesh.control import load_controls
from qmesh.control.registry import REGISTRY
from tests.deploy.tools import (
    CHART,
    COMPONENTS,
    ROOT,
    SERVICES,
    Manifest,
    RenderError,
    Tools,
    component,
    named,
    of_kind,
    pod_spec,
    workloads,
)

pytestmark = pytest.mark.timeout(900)  # the first test may install the tools


def control_data(objects: list[Manifest]) -> dict[str, str]:
    (cm,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-control")]
    data: dict[str, str] = cm["data"]
    return data


def deployment(objects: list[Manifest], service: str) -> Manifest:
    return next(o for o in of_kind(objects, "Deployment") if component(o) == service)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"local.enabled": "false", "send.enabled": "false", "smtpd.enabled": "false"},
            "pop3d.enabled needs local.enabled",
        ),
        ({"send.enabled": "false"}, "smtpd.enabled needs send.enabled"),
        ({"remote.enabled": "false"}, "send.enabled needs local.enabled and remote.enabled"),
        ({"local.keda.enabled": "true", "local.autoscaling.enabled": "true"}, "exclude each other"),
        ({"smtpd.keda.enabled": "true"}, "only local and remote"),
        ({"send.publicService.enabled": "true"}, "send has no listener"),
        ({"smtpd.publicService.ports.pop3": "110"}, "no container port of that name"),
        ({"proxyProtocol.enabled": "true"}, "proxyProtocol.trustedCIDRs"),
        ({"control.proxyclients": "10.0.0.0/8"}, "come from proxyProtocol and tls"),
        (
            {"tls.enabled": "false", "tls.certManager.enabled": "true"},
            "tls.certManager.enabled needs tls.enabled",
        ),
        (
            {
                "tls.selfSigned": "true",
                "tls.certManager.enabled": "true",
                "tls.certManager.issuerRef.name": "ca",
                "tls.certManager.dnsNames[0]": "mx.example.test",
            },
            "tls.selfSigned and tls.certManager.enabled exclude each other",
        ),
        ({"tls.enabled": "true", "tls.certManager.enabled": "true"}, "issuerRef.name"),
        ({"natsAuth.mode": "creds"}, "cannot generate .creds"),
        ({"smtpd.credentials.nats.existingSecret": "mine"}, "natsAuth.generate=false"),
        ({"control.me": "null"}, "control.me is required"),
        ({"natsAuth.admin.enabled": "false"}, "setup.enabled needs natsAuth.admin.enabled"),
    ],
)
def test_impossible_combinations_fail(tools: Tools, sets: dict[str, str], message: str) -> None:
    with pytest.raises(RenderError, match=re.escape(message)):
        tools.template(sets=sets)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"smtpd.replicas": "two"}, "smtpd.replicas"),
        ({"global.logLevel": "LOUD"}, "global.logLevel"),
        ({"smtpd.ports.bogus": "3"}, "smtpd.ports"),
        ({"pop3d.unknown": "1"}, "Additional property unknown"),
        ({"smtpd.resources.limits.memory": "null"}, "memory is required"),
    ],
)
def test_schema_refuses_bad_values(tools: Tools, sets: dict[str, str], message: str) -> None:
    with pytest.raises(RenderError, match=re.escape(message)):
        tools.template(sets=sets)


def test_proxy_protocol_renders_proxyclients(tools: Tools) -> None:
    objects = tools.template(
        sets={
            "proxyProtocol.enabled": "true",
            "proxyProtocol.trustedCIDRs": "{10.0.0.0/16,fd00::/8}",
        }
    )
    assert control_data(objects)["proxyclients"] == "10.0.0.0/16\nfd00::/8\n"
    plain = tools.template()
    assert "proxyclients" not in control_data(plain)


def test_tls_secret_is_mounted_where_the_tls_controls_are_used(tools: Tools) -> None:
    """chart #1: the TLS Secret goes to the services that own tlscert/tlskey (the registry's
    used_by), at the path the controls name, and to no other pod (least privilege)."""
    objects = tools.template(sets={"tls.enabled": "true", "tls.secretName": "mail-tls"})
    data = control_data(objects)
    cert, key = Path(data["tlscert"].strip()), Path(data["tlskey"].strip())
    assert cert.parent == key.parent
    owners = set(REGISTRY["tlscert"].used_by) | set(REGISTRY["tlskey"].used_by)
    assert owners & set(SERVICES) == {"smtpd", "pop3d", "imapd"}
    for o in workloads(objects):
        spec = pod_spec(o)
        tls = [
            v
            for v in spec.get("volumes", [])
            if v.get("secret", {}).get("secretName") == "mail-tls"
        ]
        mounts = [
            m
            for c in spec["containers"]
            for m in c.get("volumeMounts", [])
            if any(m["name"] == v["name"] for v in tls)
        ]
        if component(o) in owners:
            assert mounts == [{"name": "tls", "mountPath": str(cert.parent), "readOnly": True}]
            paths = {i["path"] for i in tls[0]["secret"]["items"]}
            assert paths == {cert.name, key.name}
        else:
            assert not tls and not mounts, o["metadata"]["name"]


def test_every_pod_starts_on_the_tls_controls_without_the_secret(
    tools: Tools, tmp_path: Path
) -> None:
    """chart #1: send, local, remote and the setup Job loaded the controls with tls.enabled
    and stopped: "control/tlscert ... not a readable file". Each pod's control directory and
    environment, loaded here where no Secret is mounted, must be usable."""
    objects = tools.template(sets={"tls.enabled": "true"})
    control = tmp_path / "control"
    control.mkdir()
    for name, text in control_data(objects).items():
        (control / name).write_text(text)
    loaded = []
    for o in workloads(objects):
        spec = pod_spec(o)
        mounted = [m for c in spec["containers"] for m in c.get("volumeMounts", [])]
        if not any(m["mountPath"] == "/etc/qmesh/control" for m in mounted):
            continue
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"] if "value" in e}
        controls = load_controls(control, env)
        assert controls.tlscert is not None, o["metadata"]["name"]
        loaded.append(component(o))
    assert sorted(c for c in loaded if c) == sorted([*COMPONENTS, "setup"])


def test_control_values_keep_qmail_format(tools: Tools) -> None:
    objects = tools.template(
        sets={
            "control.databytes": "1000000",
            "control.concurrencyremote": "20",
            "control.locals": "null",
        }
    )
    data = control_data(objects)
    assert data["databytes"] == "1000000\n"  # not 1e+06
    assert data["concurrencyremote"] == "20\n"
    assert "locals" not in data
    assert data["me"] == "mail.example.com\n"


def test_numbers_from_a_values_file_render_as_integers(tools: Tools, tmp_path: Path) -> None:
    """chart #3: YAML numbers reach the templates as floats and rendered as "2e+06", which
    smtpd read as DATABYTES=2 and refused every message."""
    values = tmp_path / "numbers.yaml"
    values.write_text(
        "control: {databytes: 3000000}\n"
        "smtpd:\n"
        "  env: {DATABYTES: 2000000, SMALL: 25, RATIO: 0.25, WORD: '2e+06', SWITCH: true}\n"
    )
    objects = tools.template(values)
    env = {
        e["name"]: e["value"]
        for e in pod_spec(deployment(objects, "smtpd"))["containers"][0]["env"]
    }
    assert env["DATABYTES"] == "2000000"
    assert env["SMALL"] == "25"
    assert env["RATIO"] == "0.25"  # a fraction stays one
    assert env["WORD"] == "2e+06"  # a string is passed as written (and refused by qmesh)
    assert env["SWITCH"] == "true"
    assert control_data(objects)["databytes"] == "3000000\n"


def test_a_control_change_rolls_every_pod(tools: Tools) -> None:
    def sums(objects: list[Manifest]) -> set[str]:
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/control"]
            for d in of_kind(objects, "Deployment")
        }

    before = sums(tools.template())
    after = sums(tools.template(sets={"control.databytes": "5000"}))
    assert len(before) == len(after) == 1
    assert before != after


def test_canonical_domain_feeds_setup_and_test(tools: Tools) -> None:
    objects = tools.template(sets={"control.locals": "# comment\n\nmx.example.test\nexample.test"})
    job = named(objects, "Job", "ci-qmesh-setup")
    assert pod_spec(job)["containers"][0]["args"][1:] == ["postmaster", "mx.example.test"]
    env = {
        e["name"]: e["value"]
        for e in pod_spec(named(objects, "Pod", "ci-qmesh-test-smtp"))["containers"][0]["env"]
    }
    assert env["TEST_RECIPIENT"] == "postmaster@mx.example.test"
    assert env["SMTP_HOST"] == "ci-qmesh-smtpd.mail.svc"
    without_locals = tools.template(
        sets={"control.locals": "null", "control.me": "Mail.Example.Net"}
    )
    job = named(without_locals, "Job", "ci-qmesh-setup")
    assert pod_spec(job)["containers"][0]["args"][2:] == ["mail.example.net"]


def test_generated_nats_users(tools: Tools) -> None:
    objects = tools.template()
    secrets = {s["metadata"]["name"]: s for s in of_kind(objects, "Secret")}
    for name in [*COMPONENTS, "admin"]:
        assert "password" in secrets[f"ci-qmesh-{name}-nats"]["data"], name
    auth = secrets["ci-qmesh-nats-auth"]["stringData"]["auth.conf"]
    for name in [*COMPONENTS, "admin"]:
        assert f'user: "qmesh-{name}"' in auth
    assert auth.count('password: "$2a$') == len(COMPONENTS) + 1  # bcrypt, never the password
    for service in COMPONENTS:
        env = {
            e["name"]: e.get("value")
            for e in pod_spec(deployment(objects, service))["containers"][0]["env"]
        }
        assert env["QMESH_NATS_USER"] == f"qmesh-{service}"
        assert env["QMESH_NATS_PASSWORD_FILE"] == "/etc/qmesh/secrets/nats/password"


def test_keda_replaces_replicas(tools: Tools) -> None:
    objects = tools.template(sets={"remote.keda.enabled": "true"})
    assert "replicas" not in deployment(objects, "remote")["spec"]
    assert deployment(objects, "local")["spec"]["replicas"] == 2
    assert not of_kind(objects, "HorizontalPodAutoscaler")


def test_every_value_is_documented() -> None:
    """Each key of values.yaml has a `# --` comment on it or on an enclosing block."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented_at: list[int] = []  # indents of the blocks a `# --` comment covers
    undocumented = []
    comment_pending = False
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment_pending = True
            continue
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        match = re.match(r"^( *)([A-Za-z0-9_.\-/]+):(.*)$", line)
        if not match:
            continue
        indent = len(match.group(1))
        documented_at = [i for i in documented_at if i < indent]
        leaf = match.group(3).strip() not in ("", "|")
        if comment_pending:
            documented_at.append(indent)
            comment_pending = False
        elif leaf and not documented_at:
            undocumented.append(f"{number}: {stripped}")
    assert not undocumented, "values without a `# --` comment:\n" + "\n".join(undocumented)


@pytest.mark.parametrize(
    "script",
    ["deploy/ci/gen-values-schema.py", "deploy/ci/gen-kustomize.py", "deploy/ci/gen-dev-config.py"],
)
def test_generated_files_are_in_step(tools: Tools, script: str) -> None:
    done = subprocess.run(
        [str(tools.python), str(ROOT / script), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"HELM": str(tools.helm), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_kustomize_base_has_no_secrets_and_no_hooks() -> None:
    base = ROOT / "k8s" / "base"
    files = sorted(p.name for p in base.glob("*.yaml"))
    assert "kustomization.yaml" in files
    assert not [f for f in files if f.startswith("secret-")]
    assert not [f for f in files if f.startswith(("job-", "pod-"))]
    assert len(files) > 20
