"""What schemas cannot check in the rendered chart, for every scenario of k8s/qmesh/ci/:
selectors match labels, each service has its objects, probes, the restricted security context,
sane ports and names, credentials only as files, and the NetworkPolicies of the hardening list.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qmesh.control import load_controls
from qmesh.runtime.tls import TlsContexts
from tests.deploy.tools import (
    CHART,
    COMPONENTS,
    SCENARIOS,
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

RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "Certificate"}


def objects_of(rendered: dict[str, list[Manifest]], scenario: str) -> list[Manifest]:
    objects = rendered[scenario]
    assert objects, f"scenario {scenario} rendered nothing"
    return objects


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def containers(spec: Manifest) -> list[Manifest]:
    result: list[Manifest] = spec["containers"] + spec.get("initContainers", [])
    return result


def enabled_services(objects: list[Manifest]) -> list[str]:
    return sorted(c for o in of_kind(objects, "Deployment") if (c := component(o)))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_service_has_its_objects(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    objects = objects_of(rendered, scenario)
    assert enabled_services(objects) == sorted(COMPONENTS)
    for service in COMPONENTS:
        deployment = next(o for o in of_kind(objects, "Deployment") if component(o) == service)
        name = deployment["metadata"]["name"]
        assert named(objects, "Service", name)["spec"]["type"] == "ClusterIP"
        assert named(objects, "ServiceAccount", name)["automountServiceAccountToken"] is False
        assert pod_spec(deployment)["serviceAccountName"] == name
        assert named(objects, "PodDisruptionBudget", name)
        program = "admin" if service == "webadmin" else service  # issue 14
        assert pod_spec(deployment)["containers"][0]["args"] == ["run", program]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_match_labels(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    objects = objects_of(rendered, scenario)
    deployments = of_kind(objects, "Deployment")
    for d in deployments:
        selector = d["spec"]["selector"]["matchLabels"]
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        assert matches(selector, pod_labels), d["metadata"]["name"]
        assert "app.kubernetes.io/component" in selector
        others = [o for o in deployments if o is not d]
        assert not any(
            matches(selector, o["spec"]["template"]["metadata"]["labels"]) for o in others
        ), f"{d['metadata']['name']} selector also selects another Deployment's pods"
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
    for service in of_kind(objects, "Service"):
        selected = [p for p in pods if matches(service["spec"]["selector"], p)]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {selected}"
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        assert sum(matches(pdb["spec"]["selector"]["matchLabels"], p) for p in pods) == 1
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for scaler in of_kind(objects, kind):
            target = scaler["spec"]["scaleTargetRef"]["name"]
            assert named(objects, "Deployment", target)
            assert "replicas" not in named(objects, "Deployment", target)["spec"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_on_the_health_endpoints(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    for d in of_kind(objects_of(rendered, scenario), "Deployment"):
        container = pod_spec(d)["containers"][0]
        port_names = {p["name"] for p in container["ports"]}
        expected = {
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
            "startupProbe": "/healthz",
        }
        for probe, path in expected.items():
            get = container[probe]["httpGet"]
            assert get["path"] == path, (d["metadata"]["name"], probe)
            assert get["port"] == "http" and "http" in port_names


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_restricted_pod_security(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    """ARCH-20: non-root, read-only root filesystem, no capabilities, one uid per service."""
    objects = objects_of(rendered, scenario)
    uids: dict[str, int] = {}
    for w in workloads(objects):
        spec = pod_spec(w)
        name = w["metadata"]["name"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] >= 10000, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), (name, key)
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["privileged"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["runAsNonRoot"] is True, name
            assert c["resources"]["limits"]["memory"], name
            assert c["resources"]["requests"], name
            assert all("hostPort" not in p for p in c.get("ports", [])), name
        if w["kind"] == "Deployment":
            uids[name] = pod["runAsUser"]
    assert len(set(uids.values())) == len(uids), f"services share a uid: {uids}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_only_tmp_is_writable(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    for w in workloads(objects_of(rendered, scenario)):
        spec = pod_spec(w)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            assert "hostPath" not in v, w["metadata"]["name"]
            if "emptyDir" in v:
                assert v["emptyDir"].get("sizeLimit"), (w["metadata"]["name"], v["name"])
        for c in containers(spec):
            for mount in c.get("volumeMounts", []):
                writable = not mount.get("readOnly", False)
                if writable:
                    assert mount["mountPath"] == "/tmp", (w["metadata"]["name"], mount)
                    assert "emptyDir" in volumes[mount["name"]]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_credentials_are_files_never_env(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    for w in workloads(objects_of(rendered, scenario)):
        spec = pod_spec(w)
        for c in containers(spec):
            assert "envFrom" not in c, w["metadata"]["name"]
            for env in c.get("env", []):
                source = env.get("valueFrom", {})
                assert "secretKeyRef" not in source, (w["metadata"]["name"], env["name"])
                if any(word in env["name"] for word in ("PASSWORD", "SECRET", "ACCESS_KEY")):
                    assert env["name"].endswith("_FILE"), (w["metadata"]["name"], env["name"])
        for v in spec.get("volumes", []):
            if "secret" in v:
                assert v["secret"]["defaultMode"] == 0o400
            if "projected" in v:
                assert v["projected"]["defaultMode"] == 0o400


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_is_shared_between_deployments(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    users: dict[str, set[str]] = {}
    for w in workloads(objects_of(rendered, scenario)):
        for v in pod_spec(w).get("volumes", []):
            sources = [
                s["secret"]["name"]
                for s in v.get("projected", {}).get("sources", [])
                if "secret" in s
            ]
            if "secret" in v:
                sources.append(v["secret"]["secretName"])
            for secret in sources:
                users.setdefault(secret, set()).add(w["metadata"]["name"])
    tls = {s for s in users if s.endswith("-tls")}  # the certificate serves smtpd and pop3d
    shared = {s: u for s, u in users.items() if len(u) > 1 and s not in tls}
    assert not shared, shared
    admin = [s for s in users if s.endswith("-admin-nats")]
    for secret in admin:
        assert all(w.endswith("-setup") for w in users[secret])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ports_and_names_are_sane(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    objects = objects_of(rendered, scenario)
    for o in objects:
        name = o["metadata"]["name"]
        assert len(name) <= 63 and RFC1123.match(name), name
    for d in of_kind(objects, "Deployment"):
        ports = pod_spec(d)["containers"][0]["ports"]
        numbers = [p["containerPort"] for p in ports]
        assert len(set(numbers)) == len(numbers), d["metadata"]["name"]
        for p in ports:
            assert 1024 < p["containerPort"] <= 65535, p
            assert len(p["name"]) <= 15 and PORT_NAME.match(p["name"]), p
    for s in of_kind(objects, "Service"):
        backend = next(
            d
            for d in of_kind(objects, "Deployment")
            if matches(s["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        )
        container_ports = {p["name"] for p in pod_spec(backend)["containers"][0]["ports"]}
        for p in s["spec"]["ports"]:
            assert 1 <= p["port"] <= 65535, p
            assert p["targetPort"] in container_ports, (s["metadata"]["name"], p)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_mail_ports_are_public_only_for_listeners(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    objects = objects_of(rendered, scenario)
    for s in of_kind(objects, "Service"):
        if s["spec"]["type"] == "ClusterIP":
            continue
        assert component(s) in ("smtpd", "pop3d", "imapd"), s["metadata"]["name"]
        public = {p["name"]: p["port"] for p in s["spec"]["ports"]}
        assert "http" not in public, "metrics must stay inside the cluster"
        standard = {
            "smtp": 25,
            "submission": 587,
            "smtps": 465,
            "qmtp": 209,
            "pop3": 110,
            "pop3s": 995,
            "imap": 143,
            "imaps": 993,
        }
        for port, number in public.items():
            assert standard[port] == number, (port, number)
        if s["spec"]["type"] == "LoadBalancer":
            assert s["spec"]["externalTrafficPolicy"] in ("Local", "Cluster")


def policies_for(objects: list[Manifest], service: str) -> list[Manifest]:
    """NetworkPolicies whose podSelector selects the pods of ``service``."""
    deployment = next(o for o in of_kind(objects, "Deployment") if component(o) == service)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    chosen = []
    for p in of_kind(objects, "NetworkPolicy"):
        selector = p["spec"]["podSelector"]
        if not matches(selector.get("matchLabels", {}), labels):
            continue
        expressions: list[dict[str, Any]] = selector.get("matchExpressions", [])
        if all(labels.get(e["key"]) in e["values"] for e in expressions):
            chosen.append(p)
    return chosen


def egress_ports(policies: list[Manifest]) -> set[int | str]:
    return {
        port["port"]
        for p in policies
        for rule in p["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }


def internet_smtp(policies: list[Manifest]) -> bool:
    """Whether a policy lets the pods connect to port 25 of the Internet."""
    return any(
        peer.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0")
        and any(port["port"] == 25 for port in rule.get("ports", []))
        for p in policies
        for rule in p["spec"].get("egress", [])
        for peer in rule.get("to", [])
    )


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "dev"])
def test_network_policies(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    objects = objects_of(rendered, scenario)
    policies = of_kind(objects, "NetworkPolicy")
    deny = [p for p in policies if p["metadata"]["name"].endswith("-default-deny")]
    assert len(deny) == 1
    assert sorted(deny[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"]
    for service in SERVICES:
        mine = policies_for(objects, service)
        assert deny[0] in mine, service
        ports = egress_ports(mine)
        assert 53 in ports, f"{service}: no DNS"
        assert 4222 in ports, f"{service}: no NATS"
        assert ports & {9000, 443}, f"{service}: no S3"
        assert internet_smtp(mine) == (service == "remote"), service
        ingress_ports = {
            port["port"]
            for p in mine
            for rule in p["spec"].get("ingress", [])
            for port in rule.get("ports", [])
        }
        listeners = {
            "smtpd": {"smtp", "submission", "smtps", "qmtp"},
            "pop3d": {"pop3", "pop3s"},
            "imapd": {"imap", "imaps"},
        }.get(service, set())
        assert ingress_ports == {"http"} | listeners, service
    remote = policies_for(objects, "remote")
    internet = [p for p in remote if p["metadata"]["name"].endswith("-remote-internet")]
    excepted = {
        c
        for p in internet
        for rule in p["spec"]["egress"]
        for peer in rule["to"]
        for c in peer["ipBlock"].get("except", [])
    }
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= excepted
    assert 25 in egress_ports(internet)


def test_dev_scenario_has_no_policies_because_it_turns_them_off(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert of_kind(rendered["dev"], "NetworkPolicy") == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_one_image_for_all_services(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    images = {
        c["image"]
        for w in workloads(objects_of(rendered, scenario))
        for c in containers(pod_spec(w))
    }
    assert len(images) == 1, images


def test_digest_pins_the_image(rendered: dict[str, list[Manifest]]) -> None:
    (image,) = {
        pod_spec(d)["containers"][0]["image"] for d in of_kind(rendered["full"], "Deployment")
    }
    assert re.fullmatch(r"[^@]+:[^@]+@sha256:[0-9a-f]{64}", image), image


def test_crd_objects_of_the_full_scenario(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["full"]
    assert {o["kind"] for o in objects} >= CRD_KINDS
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    monitored = [
        s
        for s in of_kind(objects, "Service")
        if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        and any(p["name"] == "http" for p in s["spec"]["ports"])
    ]
    assert sorted(component(s) or "" for s in monitored) == sorted(COMPONENTS)

    scaled = {component(o): o for o in of_kind(objects, "ScaledObject")}
    assert set(scaled) == {"local", "remote"}
    for service, stream in (("local", "QMESH_LOCAL"), ("remote", "QMESH_REMOTE")):
        trigger = scaled[service]["spec"]["triggers"][0]
        assert trigger["type"] == "nats-jetstream"
        assert trigger["metadata"]["stream"] == stream
        assert trigger["metadata"]["consumer"] == service
        assert trigger["metadata"]["account"] == "QMESH"

    (rules,) = of_kind(objects, "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rules["spec"]["groups"] for r in g["rules"])
    for metric in ("qmesh_send_queue_oldest_seconds", "qmesh_send_deliveries_total", "up"):
        assert metric in exprs

    (certificate,) = of_kind(objects, "Certificate")
    secret = certificate["spec"]["secretName"]
    for service in ("smtpd", "pop3d", "imapd"):
        d = next(o for o in of_kind(objects, "Deployment") if component(o) == service)
        tls = [v for v in pod_spec(d)["volumes"] if v["name"] == "tls"]
        assert tls and tls[0]["secret"]["secretName"] == secret
    for service in ("send", "local", "remote"):
        d = next(o for o in of_kind(objects, "Deployment") if component(o) == service)
        assert all(v["name"] != "tls" for v in pod_spec(d)["volumes"]), service


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_carry_the_control_checksum(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    objects = objects_of(rendered, scenario)
    sums = {
        d["spec"]["template"]["metadata"]["annotations"]["checksum/control"]
        for d in of_kind(objects, "Deployment")
    }
    assert len(sums) == 1 and re.fullmatch(r"[0-9a-f]{64}", sums.pop())
    controls = [
        c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-control")
    ]
    assert len(controls) == 1
    for d in of_kind(objects, "Deployment"):
        volume = next(v for v in pod_spec(d)["volumes"] if v["name"] == "control")
        if "projected" in volume:  # remote with DKIM keys: the control files come first
            volume = volume["projected"]["sources"][0]
        assert volume["configMap"]["name"] == controls[0]["metadata"]["name"]


def control_data(objects: list[Manifest]) -> dict[str, str]:
    (cm,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-control")]
    data: dict[str, str] = cm["data"]
    return data


def scenario_values(tools: Tools, scenario: str) -> dict[str, Any]:
    values: dict[str, Any] = tools.load_yaml(CHART / "ci" / f"{scenario}-values.yaml") or {}
    return values


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_lets_users_log_in_to_pop3(
    rendered: dict[str, list[Manifest]], tools: Tools, scenario: str
) -> None:
    """chart #5: the dev scenario had neither TLS nor pop3plaintext, so pop3d refused every
    login (POP3-60). Each scenario offers TLS, its Secret mounted in pop3d where the controls
    say, or sets pop3plaintext."""
    objects = objects_of(rendered, scenario)
    data = control_data(objects)
    if data.get("pop3plaintext", "").strip() == "1":
        return
    assert "tlscert" in data and "tlskey" in data, (
        f"{scenario}: no TLS and no pop3plaintext: nobody can log in to POP3 (POP3-60)"
    )
    pop3d = next(o for o in of_kind(objects, "Deployment") if component(o) == "pop3d")
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(pop3d)["containers"][0]["volumeMounts"]}
    cert_dir = data["tlscert"].strip().rsplit("/", 1)[0]
    (volume,) = [v for v in pod_spec(pop3d)["volumes"] if mounts.get(v["name"]) == cert_dir]
    items = {i["key"]: i["path"] for i in volume["secret"]["items"]}
    assert items == {"tls.crt": "tls.crt", "tls.key": "tls.key"}
    assert {data["tlscert"].strip(), data["tlskey"].strip()} == {
        f"{cert_dir}/tls.crt",
        f"{cert_dir}/tls.key",
    }


def test_self_signed_certificate_of_the_dev_scenario_loads(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    """chart #5: the dev scenario carries its certificate (no Secret to bring), and it is one
    smtpd and pop3d can serve."""
    objects = objects_of(rendered, "dev")
    data = control_data(objects)
    (secret,) = [s for s in of_kind(objects, "Secret") if s["type"] == "kubernetes.io/tls"]
    pop3d = next(o for o in of_kind(objects, "Deployment") if component(o) == "pop3d")
    volume = next(v for v in pod_spec(pop3d)["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    control = tmp_path / "control"
    control.mkdir()
    for name, text in data.items():
        (control / name).write_text(text)
    for key, control_name in (("tls.crt", "tlscert"), ("tls.key", "tlskey")):
        path = tmp_path / key
        path.write_bytes(base64.b64decode(secret["data"][key]))
        (control / control_name).write_text(f"{path}\n")
    controls = load_controls(control, {})
    assert TlsContexts(lambda: controls).current() is not None
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(tmp_path / "tls.crt")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"CN = {controls.me}" in subject


def test_dkim_keys_reach_remote_only(rendered: dict[str, list[Manifest]]) -> None:
    """Issue 11: the DKIM Secret is mounted into remote's control directory and nowhere else;
    each key lands at domainkeys/<domain>/<selector>, the active ones in .../selector."""
    objects = objects_of(rendered, "full")
    holders = {}
    for w in workloads(objects):
        for v in pod_spec(w).get("volumes", []):
            for source in v.get("projected", {}).get("sources", []):
                if "secret" in source and source["secret"]["name"].endswith("-dkim"):
                    holders[component(w)] = (v["name"], source["secret"]["items"])
    assert list(holders) == ["remote"]
    volume, items = holders["remote"]
    assert volume == "control"
    assert {i["path"] for i in items} == {
        "domainkeys/example.test/rsa202606",
        "domainkeys/example.test/rsa202612",
        "domainkeys/example.test/ed202612",
        "domainkeys/hosted.test/default",
    }
    assert all(i["key"] == i["path"].split("/", 1)[1].replace("/", "_") for i in items)
    selectors = named(objects, "ConfigMap", "ci-qmesh-dkim")["data"]
    assert selectors["example.test_selector"] == "rsa202612\ned202612\n"
    remote = next(w for w in workloads(objects) if component(w) == "remote")
    mounts = pod_spec(remote)["containers"][0]["volumeMounts"]
    assert {"name": "control", "mountPath": "/etc/qmesh/control", "readOnly": True} in mounts


def test_webadmin_has_no_s3_key_and_its_own_nats_user(tools: Tools) -> None:
    """admin's pages (issue 14): least privilege; an Ingress only when asked for, over TLS."""
    objects = tools.template()
    deployment = next(o for o in of_kind(objects, "Deployment") if component(o) == "webadmin")
    container = pod_spec(deployment)["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["QMESH_NATS_USER"] == "qmesh-webadmin"
    assert env["QMESH_ADMIN_PORT"] == env["QMESH_HTTP_PORT"] == "8088"
    assert not [n for n in env if n.startswith("QMESH_S3")]
    sources = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "credentials")[
        "projected"
    ]["sources"]
    assert [s["secret"]["name"] for s in sources] == ["ci-qmesh-webadmin-nats"]
    assert not of_kind(objects, "Ingress")
    with_ingress = tools.template(
        sets={"webadmin.ingress.enabled": "true", "webadmin.ingress.host": "admin.example.test"}
    )
    (ingress,) = of_kind(with_ingress, "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == ["admin.example.test"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "ci-qmesh-webadmin", "port": {"name": "http"}}


def test_auth_dmarc_reject_renders_the_dmarcreject_control(tools: Tools, tmp_path: Path) -> None:
    """Issue 11: `auth.dmarcReject` is the control `dmarcreject` that smtpd reads (RFC 7489:
    honour p=reject and p=quarantine); off by default, where failures are only recorded. A
    value that is not a boolean is refused by the schema."""
    assert "dmarcreject" not in control_data(tools.template())
    data = control_data(tools.template(sets={"auth.dmarcReject": "true"}))
    assert data["dmarcreject"] == "1\n"
    (tmp_path / "dmarcreject").write_text(data["dmarcreject"])
    assert load_controls(tmp_path, {}).dmarcreject is True
    with pytest.raises(RenderError, match="dmarcReject"):
        tools.template(sets={"auth.dmarcReject": "sometimes"})


def _lists_env(objects: list[Manifest]) -> dict[str, str | None]:
    deployment = next(o for o in of_kind(objects, "Deployment") if component(o) == "lists")
    return {e["name"]: e.get("value") for e in pod_spec(deployment)["containers"][0]["env"]}


def test_lists_one_click_links_follow_the_admin_ingress(tools: Tools) -> None:
    """Issue #15 (RFC 8058): posts carry a one-click unsubscribe link only where admin's pages
    are reachable: the admin Ingress's host over HTTPS, or lists.unsubscribeUrl; not at all
    without either (the mailto: address is left), and never over plain HTTP."""
    assert "QMESH_LISTS_UNSUBSCRIBE_URL" not in _lists_env(tools.template())
    ingress = {"webadmin.ingress.enabled": "true", "webadmin.ingress.host": "admin.example.test"}
    env = _lists_env(tools.template(sets=ingress))
    assert env["QMESH_LISTS_UNSUBSCRIBE_URL"] == "https://admin.example.test"
    explicit = {**ingress, "lists.unsubscribeUrl": "https://lists.example.test/mail"}
    env = _lists_env(tools.template(sets=explicit))
    assert env["QMESH_LISTS_UNSUBSCRIBE_URL"] == "https://lists.example.test/mail"
    off = {**ingress, "webadmin.enabled": "false"}
    assert "QMESH_LISTS_UNSUBSCRIBE_URL" not in _lists_env(tools.template(sets=off))
    # an explicit env entry wins, and is not given twice
    mine = {**ingress, "lists.env.QMESH_LISTS_UNSUBSCRIBE_URL": "https://other.example.test"}
    deployment = next(
        o for o in of_kind(tools.template(sets=mine), "Deployment") if component(o) == "lists"
    )
    names = [e["name"] for e in pod_spec(deployment)["containers"][0]["env"]]
    assert names.count("QMESH_LISTS_UNSUBSCRIBE_URL") == 1
    with pytest.raises(RenderError, match="unsubscribeUrl"):
        tools.template(sets={"lists.unsubscribeUrl": "http://admin.example.test"})
