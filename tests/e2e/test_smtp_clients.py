"""A real SMTP client from Debian (swaks) against ``qmesh up``: plain SMTP, STARTTLS, and
authenticated submission, each message read back by POP3 (SMTPD-57, -80, -81, -82, -87)."""

from __future__ import annotations

import poplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, client_program, tls_cluster
from tests.e2e.test_mail_flow import wait_for

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice@mx.example.test", "alice-pw"


@pytest.fixture(scope="module")
def swaks() -> str:
    return client_program("swaks")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with tls_cluster(tmp_path, USER, PASSWORD, pop3plaintext="1") as c:
        yield c


def run_swaks(swaks: str, port: int | str, *args: str) -> str:
    done = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(port), "--helo", "client.example",
         "--timeout", "30", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def subjects(cluster: Cluster) -> list[str]:
    pop = poplib.POP3("127.0.0.1", cluster.pop3_port, timeout=10)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        found = []
        for n in range(1, pop.stat()[0] + 1):
            for line in pop.retr(n)[1]:
                if line.startswith(b"Subject: "):
                    found.append(line[len(b"Subject: ") :].decode())
        return sorted(found)
    finally:
        pop.quit()


def test_swaks_plain_starttls_and_submission(swaks: str, cluster: Cluster) -> None:
    env = cluster.env
    out = run_swaks(swaks, env["QMESH_SMTP_PORT"], "--from", "joe@far.test", "--to", USER,
                    "--header", "Subject: plain")  # fmt: skip
    assert "<-  250 2.0.0 ok " in out and " qp " in out  # SMTPD-57
    out = run_swaks(swaks, env["QMESH_SMTP_PORT"], "--tls", "--from", "joe@far.test",
                    "--to", USER, "--header", "Subject: starttls")  # fmt: skip
    assert "<-  220 2.0.0 ready to start TLS" in out  # SMTPD-80
    out = run_swaks(swaks, env["QMESH_SUBMISSION_PORT"], "--tls", "--auth", "PLAIN",
                    "--auth-user", USER, "--auth-password", PASSWORD, "--from", USER,
                    "--to", USER, "--header", "Subject: submission")  # fmt: skip
    assert "<~  235 2.7.0 authentication successful" in out  # SMTPD-81
    out = run_swaks(swaks, env["QMESH_SMTPS_PORT"], "--tls-on-connect", "--auth", "LOGIN",
                    "--auth-user", USER, "--auth-password", PASSWORD, "--from", USER,
                    "--to", USER, "--header", "Subject: smtps")  # fmt: skip
    assert "<~  235 2.7.0 authentication successful" in out  # SMTPD-87
    wait_for(lambda: len(subjects(cluster)) == 4, what="four messages in the mailbox")
    assert subjects(cluster) == ["plain", "smtps", "starttls", "submission"]


def test_swaks_submission_without_auth_is_refused(swaks: str, cluster: Cluster) -> None:
    done = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", cluster.env["QMESH_SUBMISSION_PORT"],
         "--tls", "--from", USER, "--to", "someone@elsewhere.test", "--timeout", "30"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "<~* 530 5.7.0 authentication required" in done.stdout  # SMTPD-82, inside TLS
