"""A real POP3 client from Debian (mpop) against ``qmesh up``: STLS on the POP3 port and
implicit TLS on POP3S, download and delete, and a second run that finds nothing new
(POP3-21, POP3-41, POP3-43, POP3-60)."""

from __future__ import annotations

import hashlib
import poplib
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, client_program, tls_cluster
from tests.e2e.test_mail_flow import wait_for

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice@mx.example.test", "alice-pw"


@pytest.fixture(scope="module")
def mpop() -> str:
    return client_program("mpop")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with tls_cluster(tmp_path, USER, PASSWORD, pop3plaintext="0") as c:
        yield c


def fingerprint(cluster: Cluster) -> str:
    pem = Path(cluster.control.joinpath("tlscert").read_text().strip()).read_text()
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def deliver(cluster: Cluster, *subjects: str) -> None:
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        for subject in subjects:
            smtp.sendmail("joe@far.test", [USER], f"Subject: {subject}\r\n\r\nhi\r\n".encode())


def waiting(cluster: Cluster) -> int:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    pop = poplib.POP3_SSL("127.0.0.1", int(cluster.env["QMESH_POP3S_PORT"]), context=context)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        return int(pop.stat()[0])
    finally:
        pop.quit()


def run_mpop(mpop: str, cluster: Cluster, maildir: Path, *, implicit: bool) -> str:
    port = cluster.env["QMESH_POP3S_PORT" if implicit else "QMESH_POP3_PORT"]
    done = subprocess.run(
        [mpop, "--host=127.0.0.1", f"--port={port}", "--timeout=30",
         f"--user={USER}", f"--passwordeval=echo {PASSWORD}", "--auth=user",
         "--tls=on", f"--tls-starttls={'off' if implicit else 'on'}",
         f"--tls-fingerprint={fingerprint(cluster)}",
         f"--delivery=maildir,{maildir}", "--keep=off", "--only-new=off"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def subjects(maildir: Path) -> list[str]:
    found = []
    for path in sorted(maildir.joinpath("new").iterdir()):
        for line in path.read_bytes().splitlines():
            if line.startswith(b"Subject: "):
                found.append(line[len(b"Subject: ") :].decode())
    return sorted(found)


def test_mpop_over_stls_then_implicit_tls_downloads_and_deletes(
    mpop: str, cluster: Cluster, tmp_path: Path
) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)

    deliver(cluster, "one", "two", "three")
    wait_for(lambda: waiting(cluster) == 3, what="three messages in the mailbox")
    run_mpop(mpop, cluster, maildir, implicit=False)  # STLS on the POP3 port (POP3-41)
    assert subjects(maildir) == ["one", "three", "two"]
    assert waiting(cluster) == 0  # deleted at QUIT (POP3-21)

    deliver(cluster, "four")
    wait_for(lambda: waiting(cluster) == 1, what="the fourth message")
    run_mpop(mpop, cluster, maildir, implicit=True)  # POP3S (POP3-43)
    assert subjects(maildir) == ["four", "one", "three", "two"]

    run_mpop(mpop, cluster, maildir, implicit=True)  # nothing new the second time
    assert subjects(maildir) == ["four", "one", "three", "two"]
    assert waiting(cluster) == 0
