"""`make pods`, one scenario: the chart rendered with k8s/qmesh/ci/SCENARIO-values.yaml as pods.

    python pod_tier.py SCENARIO --tools DIR --venv DIR --image IMAGE --work DIR

Called by deploy/ci/pod-tier.sh, which installs podman, builds the image and loops over the
scenarios. Steps, in the order docs/install-kubernetes.md gives them (release `qmesh`, namespace
`qmesh`); the shell commands of that guide are run or translated by deploy/ci/doc_walk.py:

1. `helm template` the chart; create the Secrets an operator creates (S3 keys, the TLS pair,
   the admin's NATS Secret where the chart makes none) with the guide's `kubectl create secret`
   commands (client-side dry run: no API server here).
2. Start what the chart expects outside it, on loopback: NATS (as many servers, clustered, as
   `jsReplicas`; with the chart's generated `auth.conf` when it makes one) and SeaweedFS S3.
3. Adapt the manifests for podman (deploy/ci/pod_adapter.py) and `podman kube play` every
   Deployment's pods.
4. Run the setup Job (retried up to its backoffLimit: the post-install hook) and the guide's
   admin pod; where no Job ran, provision and create the domain with it, as the guide says;
   create a user with the `qmesh` CLI in the image. Then every pod's /readyz must answer 200.
5. SMTP in to every smtpd pod, POP3 out of every pop3d pod (STARTTLS/STLS when the scenario has
   TLS); relaying to a foreign domain refused; the `helm test` pod exits 0.
6. No ERROR line in any pod's log.

Exit 0 on success, 1 with `FAIL: <what>` otherwise, 0 with `SKIP: <why>` for a scenario this
machine cannot stand up (named in SKIPPED below, with the reason) once what can be checked of it
without that infrastructure has passed.
"""

# ruff: noqa: T201 - a command-line script: printing is its output

from __future__ import annotations

import base64
import json
import os
import poplib
import shutil
import smtplib
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doc_walk
from pod_adapter import Adapter, free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "qmesh"
RELEASE = NAMESPACE = "qmesh"
PASSWORD = "pod-tier-pw-0123"

# Scenarios that need infrastructure this tier does not build, and why. What can be checked
# of them without that infrastructure still is (see Tier.precheck).
SKIPPED = {
    "external": (
        "needs NATS in operator/JWT mode over TLS (per-service .creds Secrets) and S3 over "
        "HTTPS at a public host name; this tier runs plain NATS and S3 on loopback"
    ),
}

Doc = dict[str, Any]


def say(message: str) -> None:
    print(f"   {message}", flush=True)


def fail(message: str) -> None:
    raise SystemExit(f"FAIL: {message}")


def run(
    *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        fail(f"{' '.join(args)[:200]} exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    return done


class Tier:
    def __init__(
        self,
        scenario: str,
        tools: Path,
        venv: Path,
        image: str,
        work: Path,
        extra_values: tuple[Path, ...] = (),
    ) -> None:
        self.scenario = scenario
        self.extra_values = extra_values
        self.tools = tools
        self.venv = venv
        self.image = image
        self.work = work
        self.processes: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.played: list[Path] = []
        self.docs: list[Doc] = []
        self.adapter: Adapter | None = None
        self.problems: list[str] = []  # failed checks; the run goes on to the next check

    def problem(self, message: str) -> None:
        say(f"FAILED CHECK: {message}")
        self.problems.append(message)

    # -- 1. render --------------------------------------------------------------------------
    def helm(self, *args: str) -> str:
        return run(str(self.tools / "bin" / "helm"), *args).stdout

    def kubectl(self, *args: str) -> list[Doc]:
        out = run(str(self.tools / "bin" / "kubectl"), *args, "--dry-run=client", "-o", "yaml")
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    def render(self) -> None:
        values = CHART / "ci" / f"{self.scenario}-values.yaml"
        files = [arg for path in (values, *self.extra_values) for arg in ("-f", str(path))]
        text = self.helm("template", RELEASE, str(CHART), "-n", NAMESPACE, *files)
        (self.work / "rendered.yaml").write_text(text)
        self.docs = [d for d in yaml.safe_load_all(text) if d]

    def objects(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def env_of(self, component: str) -> dict[str, str]:
        for deployment in self.objects("Deployment"):
            if deployment["metadata"]["name"] == f"{RELEASE}-{component}":
                container = deployment["spec"]["template"]["spec"]["containers"][0]
                return {e["name"]: str(e.get("value", "")) for e in container["env"]}
        fail(f"no Deployment {RELEASE}-{component} rendered")
        raise AssertionError

    def referenced_secrets(self) -> set[str]:
        names: set[str] = set()
        for doc in self.objects("Deployment") + self.objects("Job"):
            for volume in doc["spec"]["template"]["spec"].get("volumes") or []:
                if "secret" in volume:
                    names.add(volume["secret"]["secretName"])
                for source in (volume.get("projected") or {}).get("sources") or []:
                    if "secret" in source:
                        names.add(source["secret"]["name"])
        return names

    def operator_secrets(self) -> None:
        """The Secrets the guide has the operator create, made with its kubectl commands."""
        have = {d["metadata"]["name"] for d in self.objects("Secret")}
        for name in sorted(self.referenced_secrets() - have):
            if name.endswith("-s3"):
                service = name.removeprefix(f"{RELEASE}-").removesuffix("-s3")
                access, secret = f"{service}-pods-access", f"{service}-pods-secret-0123456789"
                self.docs += doc_walk.s3_secret(self.kubectl, name, access, secret)
            elif name.endswith("-tls"):
                self.docs += self.tls_secret(name)
            elif name.endswith("-dkim"):
                self.docs += self.dkim_secret(name)
            else:
                fail(f"the chart needs Secret {name} and the guide does not say how to make it")

    def dkim_secret(self, name: str) -> list[Doc]:
        """Every selector the values name, made with `qmesh dkim keygen` as the guide says."""
        control = self.work / "dkim-control"
        keys: dict[str, Path] = {}
        domains: dict[str, dict[str, list[str]]] = {}
        for path in (CHART / "ci" / f"{self.scenario}-values.yaml", *self.extra_values):
            domains |= (yaml.safe_load(path.read_text()) or {}).get("dkim", {}).get("domains", {})
        for domain, spec in domains.items():
            for selector in spec.get("selectors") or []:
                algorithm = "ed25519" if selector.startswith("ed") else "rsa"
                run(
                    "env", f"QMESH_CONTROL={control}", str(self.venv / "bin" / "qmesh"),
                    "dkim", "keygen", domain, "--selector", selector, "--algorithm", algorithm,
                )  # fmt: skip
                keys[f"{domain}_{selector}"] = control / "domainkeys" / domain / selector
        return doc_walk.dkim_secret(self.kubectl, name, keys)

    def tls_secret(self, name: str) -> list[Doc]:
        names = self.canonical_names()
        cert, key = self.work / "tls.crt", self.work / "tls.key"
        run(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={names[0]}",
            "-addext",
            "subjectAltName=" + ",".join(f"DNS:{n}" for n in names),
        )
        return doc_walk.tls_secret(self.kubectl, name, cert, key)

    def canonical_names(self) -> list[str]:
        control = self.objects("ConfigMap")[0]["data"]
        locals_ = [ln.strip() for ln in control.get("locals", "").splitlines()]
        names = [n for n in locals_ if n and not n.startswith("#")]
        return names or [control["me"].strip()]

    # -- 2. NATS and S3 on loopback ----------------------------------------------------------
    def spawn(self, name: str, args: list[str]) -> None:
        log = self.work / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.processes.append((name, process, log))

    def start_nats(self) -> str:
        replicas = int(self.env_of("smtpd")["QMESH_JS_REPLICAS"])
        auth = self.work / "nats-auth.conf"  # nats-server includes paths relative to its config
        auth_secret = [
            d for d in self.objects("Secret") if d["metadata"]["name"].endswith("nats-auth")
        ]
        client = [free_port() for _ in range(replicas)]
        monitor = [free_port() for _ in range(replicas)]
        routes = [free_port() for _ in range(replicas)]
        for n in range(replicas):
            lines = [
                f'server_name: "n{n}"',
                f"listen: 127.0.0.1:{client[n]}",
                f"http: 127.0.0.1:{monitor[n]}",
                f'jetstream {{ store_dir: "{self.work}/nats-{n}" }}',
            ]
            if replicas > 1:
                peers = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
                listen = f"127.0.0.1:{routes[n]}"
                lines.append(f"cluster {{ name: qmesh-pods, listen: {listen}, routes: [{peers}] }}")
            if auth_secret:
                auth.write_text(auth_secret[0]["stringData"]["auth.conf"])
                lines.append(f'include "{auth.name}"')
            config = self.work / f"nats-{n}.conf"
            config.write_text("\n".join(lines) + "\n")
            self.spawn(f"nats-{n}", [str(self.venv / "bin" / "nats-server"), "-c", str(config)])
        for n in range(replicas):
            self.wait_http(
                f"http://127.0.0.1:{monitor[n]}/healthz?js-enabled-only=true", f"nats-{n}"
            )
        say(
            f"NATS: {replicas} server(s) on 127.0.0.1:{','.join(map(str, client))}"
            + (" with the chart's auth.conf" if auth_secret else " without authentication")
        )
        return f"127.0.0.1:{client[0]}"

    def start_s3(self) -> str:
        keys = []
        for secret in self.objects("Secret"):
            data = secret.get("stringData") or {
                k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()
            }
            key = {"accessKey": data.get("accessKey"), "secretKey": data.get("secretKey")}
            if key["accessKey"] and key not in keys:
                keys.append(key)
        config = self.work / "s3.json"
        identities = [
            {
                "name": f"key{n}",
                "credentials": [key],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
            for n, key in enumerate(keys)
        ]
        config.write_text(json.dumps({"identities": identities}))
        ports = [free_port() for _ in range(12)]
        names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "webdav.port",
            "debug.port",
        ]
        args = [
            str(self.venv / "bin" / "weed"),
            "mini",
            f"-dir={self.work / 's3'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-admin.ui=false",
            "-master.telemetry=false",
            f"-s3.config={config}",
        ]
        args += [f"-{name}={port}" for name, port in zip(names, ports, strict=True)]
        (self.work / "s3").mkdir()
        self.spawn("s3", args)
        endpoint = f"127.0.0.1:{ports[6]}"
        self.wait_http(f"http://{endpoint}/", "s3", any_status=True)
        say(f"S3: SeaweedFS on {endpoint} with {len(keys)} key pair(s)")
        return endpoint

    def wait_http(
        self,
        url: str,
        what: str,
        timeout: float = 90,
        any_status: bool = False,
        container: str | None = None,
    ) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if container is not None:
                restarts = run("podman", "inspect", "-f", "{{.RestartCount}}", container).stdout
                if int(restarts.strip() or 0) >= 2:
                    tail = self.logs(container).strip().splitlines()[-3:]
                    fail(f"{what} is crash-looping ({restarts.strip()} restarts): {tail}")
            for name, process, log in self.processes:
                if process.poll() is not None:
                    fail(f"{name} exited: {log.read_text(errors='replace')[-1500:]}")
            try:
                with urllib.request.urlopen(url, timeout=3) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as err:
                if any_status:
                    return
                last = f"{err.code} {err.read()[:300]!r}"
            except OSError as err:
                last = str(err)
            time.sleep(0.5)
        fail(f"{what}: {url} not ready within {timeout:.0f}s ({last})")

    # -- 3. pods -------------------------------------------------------------------------------
    def adapt(self, nats: str, s3: str) -> Adapter:
        addresses = {}
        url = self.env_of("smtpd")["QMESH_NATS_URL"]
        addresses[url.split("://", 1)[1]] = nats
        addresses[doc_walk.GUIDE_NATS] = nats  # the admin pod of the guide names this one
        addresses[self.env_of("smtpd")["QMESH_S3_ENDPOINT"]] = s3
        adapter = Adapter(self.docs, self.image, addresses)
        adapter.adapt()
        adapter.write(self.work / "pods")
        self.adapter = adapter
        return adapter

    def play(self, path: Path) -> None:
        # A pod of this name left by an interrupted run of this tier would block the play.
        run("podman", "pod", "rm", "-f", "--ignore", path.stem, check=False)
        run("podman", "kube", "play", str(path))
        self.played.append(path)

    def run_quiet(self, *args: str) -> None:
        run(*args)

    def down(self) -> None:
        """`podman kube down` every played pod, all at once (each waits for its own stop)."""
        downs = [
            subprocess.Popen(
                ["podman", "kube", "down", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for path in self.played
        ]
        for process in downs:
            process.wait()
        for path in self.played:  # concurrent downs can leave an emptied pod behind
            run("podman", "pod", "rm", "-f", "--ignore", path.stem, check=False)
        self.played.clear()

    def container(self, pod: str) -> str:
        assert self.adapter is not None
        group = (
            self.adapter.pods.get(pod) or self.adapter.jobs.get(pod) or self.adapter.tests.get(pod)
        )
        assert group is not None
        return f"{pod}-{group['spec']['containers'][0]['name']}"

    def exec_target(self, target: str) -> str:
        """The container `kubectl exec TARGET` reaches: a pod, or deploy/X's first pod."""
        if target.startswith("deploy/"):
            return self.container(f"{target.removeprefix('deploy/')}-0")
        return self.container(target)

    def wait_exit(self, container: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = run(
                "podman", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container
            )
            status, code = state.stdout.split()
            if status in ("exited", "stopped"):
                return int(code)
            time.sleep(0.5)
        fail(f"{container} still running after {timeout:.0f}s")
        raise AssertionError

    def logs(self, container: str) -> str:
        done = run("podman", "logs", container, check=False)
        return done.stdout + done.stderr

    def start_pods(self) -> None:
        """Play every Deployment's pods; they turn ready once the streams are provisioned."""
        assert self.adapter is not None
        for name in self.adapter.pods:
            self.play(self.work / "pods" / "pods" / f"{name}.yaml")

    def wait_ready(self) -> None:
        assert self.adapter is not None
        for name in self.adapter.pods:
            port = self.adapter.ports[name]["http"]
            self.wait_http(
                f"http://127.0.0.1:{port}/readyz", name, timeout=120, container=self.container(name)
            )
        say(f"ready (/readyz 200): {', '.join(self.adapter.pods)}")

    def run_job(self, name: str, path: Path, limit: int) -> str:
        for attempt in range(limit + 1):
            self.play(path)
            code = self.wait_exit(self.container(name), 300)
            output = self.logs(self.container(name))
            if code == 0:
                return output
            say(f"{name} attempt {attempt + 1} exited {code}: {output.strip()[-400:]}")
            run("podman", "kube", "down", str(path), check=False)
            self.played.remove(path)
            if attempt < limit:  # as a Job's pods are retried: 10 s, 20 s, 40 s... up to 6 min
                time.sleep(min(10 * 2**attempt, 360))
        fail(f"{name} failed {limit + 1} times")
        raise AssertionError

    # -- 5. mail -------------------------------------------------------------------------------
    def pods_of(self, component: str) -> list[str]:
        assert self.adapter is not None
        return [n for n in self.adapter.pods if n.startswith(f"{RELEASE}-{component}-")]

    def mail_flows(self, user: str, tls: bool, plaintext: bool) -> None:
        assert self.adapter is not None
        context = None
        if tls:  # trust the certificate of the TLS Secret, whoever made it
            (pair,) = [d for d in self.objects("Secret") if d.get("type") == "kubernetes.io/tls"]
            cert = (pair.get("stringData") or {}).get("tls.crt") or base64.b64decode(
                pair["data"]["tls.crt"]
            ).decode()
            context = ssl.create_default_context(cadata=cert)
        if context is not None:
            context.check_hostname = False  # loopback address, certificate for the mail names
        tokens = {}
        for pod in self.pods_of("smtpd"):
            port = self.adapter.ports[pod]["smtp"]
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                smtp.ehlo("pods.example.net")
                if context is not None:
                    smtp.starttls(context=context)
                    smtp.ehlo("pods.example.net")
                smtp.mail("sender@example.net")
                code, text = smtp.rcpt("someone@relay.example.invalid")
                if not 500 <= code < 600:
                    fail(f"{pod}: relaying to a foreign domain got {code} {text!r}: open relay")
                smtp.rset()
                token = uuid.uuid4().hex
                message = EmailMessage()
                message["From"] = "sender@example.net"
                message["To"] = user
                message["Subject"] = f"pods {token}"
                message.set_content(f"pod tier {token}\n")
                smtp.send_message(message, "sender@example.net", [user])
                tokens[token] = pod
        mode = "STARTTLS" if tls else "plain"
        say(f"SMTP in ({mode}): {len(tokens)} message(s); relaying refused")
        if not (tls or plaintext):
            self.problem(
                "POP3: the scenario has neither TLS nor pop3plaintext: no client can log in"
            )
            return
        for pod in self.pods_of("pop3d"):
            found = self.pop3_fetch(pod, user, context, set(tokens))
            say(f"POP3 out of {pod} ({'STLS' if tls else 'plain'}): {len(found)} message(s)")
            tokens = {t: p for t, p in tokens.items() if t not in found}
        if tokens:
            self.problem(
                f"messages sent through {sorted(tokens.values())} never reached the mailbox"
            )

    def pop3_fetch(
        self, pod: str, user: str, context: ssl.SSLContext | None, want: set[str]
    ) -> set[str]:
        assert self.adapter is not None
        port = self.adapter.ports[pod]["pop3"]
        deadline = time.monotonic() + 90
        found: set[str] = set()
        while True:
            pop = poplib.POP3("127.0.0.1", port, timeout=30)
            try:
                if context is not None:
                    pop.stls(context=context)
                pop.user(user)
                pop.pass_(PASSWORD)
                count, _ = pop.stat()
                for n in range(1, count + 1):
                    body = b"\n".join(pop.retr(n)[1]).decode(errors="replace")
                    hits = [t for t in want if t in body]
                    if hits:
                        found.update(hits)
                        pop.dele(n)
                pop.quit()
            except poplib.error_proto as err:
                pop.close()
                self.problem(f"POP3 {pod}: {err!r}")
                return found
            if found or time.monotonic() > deadline:
                return found
            time.sleep(1)

    # -- 6. logs -------------------------------------------------------------------------------
    def error_lines(self) -> list[str]:
        assert self.adapter is not None
        bad = []
        for pod in [
            *self.adapter.pods,
            *self.adapter.jobs,
            *self.adapter.tests,
            doc_walk.ADMIN_POD,
        ]:
            with suppress(SystemExit):
                text = self.logs(self.container(pod))
                for line in text.splitlines():
                    lowered = line.lower()
                    if (
                        '"level": "error"' in lowered
                        or '"level": "critical"' in lowered
                        or "ERROR" in line
                        or "Traceback" in line
                    ):
                        bad.append(f"{pod}: {line[:400]}")
        return bad

    def dump(self) -> None:
        assert self.adapter is not None
        for pod in [*self.adapter.pods, *self.adapter.jobs, *self.adapter.tests]:
            with suppress(SystemExit, AssertionError):
                tail = self.logs(self.container(pod)).strip().splitlines()[-8:]
                print(f"--- {pod}", *tail, sep="\n   ", file=sys.stderr)
        for name, _, log in self.processes:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            print(f"--- {name}", *tail, sep="\n   ", file=sys.stderr)

    @contextmanager
    def running(self) -> Iterator[None]:
        try:
            yield
        except SystemExit as exit_:
            if exit_.code not in (0, None) and self.adapter is not None:
                self.dump()
            raise
        finally:
            self.down()
            for _, process, _ in self.processes:
                process.terminate()
            for _, process, _ in self.processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    # -- the scenario ---------------------------------------------------------------------------
    def prepare(self) -> doc_walk.Guide:
        """Render, add the operator's Secrets and the guide's admin pod (before running())."""
        self.render()
        self.operator_secrets()
        guide = doc_walk.Guide(ROOT / "docs" / "install-kubernetes.md")
        missing = doc_walk.untranslated(guide.text)
        if missing:
            fail(f"docs/install-kubernetes.md shows commands the tier does not walk: {missing}")
        self.docs += guide.admin_pod(self.docs, RELEASE)
        return guide

    def stand_up(self, guide: doc_walk.Guide) -> str:
        """NATS, S3, the pods, the setup Job and the admin commands (inside running()); the user."""
        nats = self.start_nats()
        s3 = self.start_s3()
        adapter = self.adapt(nats, s3)
        self.start_pods()
        for name, pod_info in ((n, adapter.info[n]) for n in adapter.jobs):
            if name == doc_walk.ADMIN_POD:
                continue
            out = self.run_job(
                name, self.work / "pods" / "jobs" / f"{name}.yaml", pod_info["backoffLimit"]
            )
            say(f"setup Job {name}: {out.strip().splitlines()[-1] if out.strip() else 'done'}")
        self.play(self.work / "pods" / "jobs" / f"{doc_walk.ADMIN_POD}.yaml")
        domain = self.canonical_names()[0]
        has_job = any(n != doc_walk.ADMIN_POD for n in adapter.jobs)
        user = guide.walk_exec(
            self.exec_target, domain, PASSWORD, setup_job_ran=has_job, say=say, fail=self.problem
        )
        self.wait_ready()
        return user

    def precheck(self) -> None:
        """What a skipped scenario needs of the image: nats-py signs with a .creds file only
        when the nkeys package is installed, so creds mode cannot work without it."""
        creds = any(
            e["name"] == "QMESH_NATS_CREDS"
            for d in self.objects("Deployment")
            for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
        )
        if creds:
            done = run("podman", "run", "--rm", "--network", "none", "--entrypoint", "python",
                       self.image, "-c", "import nkeys", check=False)  # fmt: skip
            if done.returncode != 0:
                fail(
                    f"scenario {self.scenario}: natsAuth.mode creds cannot work with this image:"
                    " nats-py needs the nkeys package to sign with a .creds file, and the image"
                    f" has none ({done.stderr.strip().splitlines()[-1]})"
                )
            say("the image can sign with a .creds file (nkeys is installed)")

    def main(self) -> None:
        started = time.monotonic()
        if self.scenario in SKIPPED:
            self.render()
            self.precheck()
            print(f"SKIP: scenario {self.scenario}: {SKIPPED[self.scenario]}")
            return
        guide = self.prepare()
        with self.running():
            user = self.stand_up(guide)
            assert self.adapter is not None
            control = self.objects("ConfigMap")[0]["data"]
            tls = "tlscert" in control
            plaintext = str(control.get("pop3plaintext", "0")).strip() == "1"
            self.mail_flows(user, tls, plaintext)
            for name in self.adapter.tests:
                self.play(self.work / "pods" / "tests" / f"{name}.yaml")
                code = self.wait_exit(self.container(name), 120)
                output = self.logs(self.container(name)).strip()
                if code != 0:
                    self.problem(f"helm test pod {name} exited {code}: {output[-800:]}")
                    continue
                say(f"helm test {name}: exit 0 ({output.splitlines()[-1] if output else ''})")
            bad = self.error_lines()
            if bad:
                self.problem(f"{len(bad)} ERROR line(s) in pod logs:\n" + "\n".join(bad[:20]))
            else:
                say("no ERROR line in any pod's log")
            if self.problems:
                fail(
                    f"scenario {self.scenario}: {len(self.problems)} check(s) failed:\n- "
                    + "\n- ".join(p.splitlines()[0] for p in self.problems)
                )
        say(f"scenario {self.scenario} passed in {time.monotonic() - started:.0f}s")


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario")
    parser.add_argument("--tools", type=Path, required=True)
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    os.chmod(args.work, 0o755)
    Tier(args.scenario, args.tools, args.venv.resolve(), args.image, args.work.resolve()).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
