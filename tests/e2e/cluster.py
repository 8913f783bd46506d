"""``qmesh up`` as a newcomer runs it, on free ports, for end-to-end tests and benchmarks."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qmesh.cli.up import as_role
from tests.servers import S3Server, free_ports, self_signed

SERVICES = ("smtpd", "send", "local", "remote", "pop3d", "imapd", "lists")
QMESH = [sys.executable, "-m", "qmesh.cli.main"]


@dataclass
class Cluster:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    data: Path
    control: Path
    output: Path
    http: dict[str, int] = field(default_factory=dict)

    @property
    def smtp_port(self) -> int:
        return int(self.env["QMESH_SMTP_PORT"])

    @property
    def pop3_port(self) -> int:
        return int(self.env["QMESH_POP3_PORT"])

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``qmesh ARGS`` the way an operator would, next to the running cluster."""
        env = {k: v for k, v in self.env.items() if k != "QMESH_NATS_URL"}
        return subprocess.run(
            [*QMESH, *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.data.parent,
            check=False,
        )

    def log_lines(self, service: str) -> list[dict[str, Any]]:
        """The JSON lines ``service`` has written to its log so far (a line still being
        written, or anything else on stdout, is skipped), each with ``service``."""
        path = self.data / "log" / f"{service}.log"
        if not path.exists():
            return []
        lines = []
        for text in path.read_text(errors="replace").splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict):
                lines.append(line)
        return lines

    def http_get(self, service: str, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.http[service]}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def child_pids(self, service: str) -> list[int]:
        """PIDs of the processes running ``services.<service>`` under this cluster."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid), "-f", f"services.{service}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return [int(p) for p in out.stdout.split()]

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        failing: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"qmesh up exited: {self.output.read_text()[-3000:]}")
            failing = {}
            for service in SERVICES:
                try:
                    status, body = self.http_get(service, "/readyz")
                except (OSError, http.client.HTTPException) as err:  # not up, or not ours yet
                    failing[service] = str(err)
                    continue
                if status != 200:
                    failing[service] = body
            if not failing:
                return
            time.sleep(0.3)
        logs = "\n".join(
            f"--- {s}\n" + (self.data / "log" / f"{s}.log").read_text()[-1500:]
            for s in SERVICES
            if (self.data / "log" / f"{s}.log").exists()
        )
        raise TimeoutError(f"not ready: {json.dumps(failing)[:2000]}\n{logs}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Replica:
    service: str
    process: subprocess.Popen[bytes]
    http_port: int
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except OSError as err:
            return 0, str(err)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_replica(cluster: Cluster, service: str, workdir: Path) -> Replica:
    """``qmesh run SERVICE`` with the cluster's environment and an HTTP port of its own."""
    env = as_role(cluster.env, cluster.data, service)  # its own NATS user (hardening #2)
    env["QMESH_NATS_URL"] = (cluster.data / "nats.url").read_text().strip()
    env.setdefault("QMESH_STORE", f"file://{(cluster.data / 'store').resolve()}")
    env["QMESH_LISTEN_HOST"] = env["QMESH_HTTP_HOST"] = "127.0.0.1"
    (port,) = free_ports(1)
    env["QMESH_HTTP_PORT"] = str(port)
    env["PYTHONUNBUFFERED"] = "1"
    log = workdir / f"{service}-replica.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*QMESH, "run", service],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    replica = Replica(service, process, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{service} replica exited: {log.read_text()[-2000:]}")
        if replica.get("/readyz")[0] == 200:
            return replica
        time.sleep(0.3)
    replica.stop()
    raise TimeoutError(f"{service} replica not ready: {log.read_text()[-2000:]}")


def write_controls(control: Path, controls: dict[str, str]) -> None:
    control.mkdir(parents=True, exist_ok=True)
    for name, text in controls.items():
        (control / name).write_text(text if text.endswith("\n") else text + "\n")


def start_cluster(
    workdir: Path,
    controls: dict[str, str] | None = None,
    s3: S3Server | None = None,
    extra_env: dict[str, str] | None = None,
) -> Cluster:
    data = workdir / "qmesh-data"
    control = workdir / "control"
    if controls is not None:
        write_controls(control, controls)
    ports = free_ports(18)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QMESH_")}
    env.update(
        {
            "QMESH_DATA": str(data),
            "QMESH_CONTROL": str(control),
            "QMESH_NATS_PORT": str(ports[0]),
            "QMESH_SMTP_PORT": str(ports[1]),
            "QMESH_SUBMISSION_PORT": str(ports[2]),
            "QMESH_QMTP_PORT": str(ports[3]),
            "QMESH_POP3_PORT": str(ports[4]),
            "QMESH_SMTPS_PORT": str(ports[10]),
            "QMESH_POP3S_PORT": str(ports[11]),
            "QMESH_IMAP_PORT": str(ports[12]),
            "QMESH_IMAPS_PORT": str(ports[13]),
            "QMESH_ADMIN_PORT": str(ports[16]),
            "QMESH_WEBMAIL_PORT": str(ports[17]),
            "QMESH_LOG_LEVEL": "INFO",
        }
    )
    http = dict(zip(SERVICES, [*ports[5:10], ports[14], ports[15]], strict=True))
    for service, port in http.items():
        env[f"QMESH_{service.upper()}_HTTP_PORT"] = str(port)
    if s3 is not None:
        unique = uuid.uuid4().hex[:16]
        env.update(
            {
                "QMESH_STORE": "s3",
                "QMESH_S3_ENDPOINT": s3.endpoint,
                "QMESH_S3_ACCESS_KEY": s3.access_key,
                "QMESH_S3_SECRET_KEY": s3.secret_key,
                # buckets of their own: the S3 server is shared by the whole test session
                "QMESH_QUEUE_BUCKET": f"q-{unique}",
                "QMESH_MAIL_BUCKET": f"m-{unique}",
            }
        )
    env.update(extra_env or {})
    workdir.mkdir(parents=True, exist_ok=True)
    output = workdir / "qmesh-up.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [*QMESH, "up"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    cluster = Cluster(process, env, data, control, output, http)
    try:
        cluster.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def client_program(name: str) -> str:
    """A Debian client the tests drive; CI installs it (deploy/ci/system-packages.sh)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make check installs it: deploy/ci/system-packages.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextlib.contextmanager
def tls_cluster(workdir: Path, user: str, password: str, **controls: str) -> Iterator[Cluster]:
    """``qmesh up`` with a certificate for mx.example.test and one account."""
    cert, key = self_signed(workdir / "tls", "mx.example.test")
    base = {
        "me": "mx.example.test",
        "locals": "mx.example.test",
        "rcpthosts": "mx.example.test",
        "tlscert": str(cert),
        "tlskey": str(key),
    }
    cluster = start_cluster(workdir / "site", {**base, **controls})
    try:
        add = cluster.cli("user", "add", user, "--password-stdin", stdin=password + "\n")
        assert add.returncode == 0, add.stderr
        yield cluster
    finally:
        cluster.stop()
