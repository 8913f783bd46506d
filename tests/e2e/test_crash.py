"""ARCH-02 under SIGKILL: kill send and local in the middle of a few hundred messages; after
``qmesh up`` restarts them every accepted message is in its mailbox, exactly once (ARCH-11).
A todo is acknowledged only once its record is durable (ARCH-04, CLEAN-01), so a send killed
in between loses nothing."""

from __future__ import annotations

import os
import signal
import smtplib
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, start_cluster

pytestmark = pytest.mark.e2e

MESSAGES = 300
SESSIONS = 3


def mailbox_count(cluster: Cluster) -> int:
    return sum(1 for _ in (cluster.data / "store" / "qmesh-mail").glob("crash.test/*/INBOX/new/*"))


def send_batch(
    cluster: Cluster, n: int, count: int, accepted: list[str], errors: list[BaseException]
) -> None:
    try:
        send_messages(cluster, n, count, accepted)
    except BaseException as err:  # reported by the test, not lost in the thread
        errors.append(err)


def send_messages(cluster: Cluster, n: int, count: int, accepted: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.far.test")
        for i in range(count):
            smtp.mail("joe@far.test")
            smtp.rcpt(f"u{(n + i) % 3}@crash.test")
            code, reply = smtp.data(f"Subject: m{n}-{i}\r\n\r\nbody {n}-{i}\r\n".encode())
            if code == 250:
                accepted.append(reply.decode())


def kill(cluster: Cluster, service: str) -> None:
    pids = cluster.child_pids(service)
    assert pids, f"no {service} process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def test_arch_02_sigkill_send_and_local_loses_nothing(tmp_path: Path) -> None:
    cluster = start_cluster(
        tmp_path / "site",
        # local is killed mid-run: RCPT-time verification (SMTPD-45) would answer 451 then
        {
            "me": "mx.crash.test",
            "locals": "crash.test",
            "rcpthosts": "crash.test",
            "rcptcheck": "0",
        },
    )
    try:
        for i in range(3):
            r = cluster.cli("user", "add", f"u{i}@crash.test", "--no-password")
            assert r.returncode == 0, r.stderr
        accepted: list[str] = []
        errors: list[BaseException] = []
        senders = [
            threading.Thread(
                target=send_batch, args=(cluster, n, MESSAGES // SESSIONS, accepted, errors)
            )
            for n in range(SESSIONS)
        ]
        for t in senders:
            t.start()

        def sent(at_least: int) -> None:
            while len(accepted) < at_least and not errors:
                time.sleep(0.05)
            assert not errors, errors

        sent(MESSAGES // 4)
        kill(cluster, "send")
        sent(MESSAGES // 2)
        kill(cluster, "local")
        for t in senders:
            t.join(300)
        assert not errors, errors
        assert len(accepted) == MESSAGES  # smtpd was never killed: every message accepted
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and mailbox_count(cluster) < len(accepted):
            time.sleep(0.5)
        assert mailbox_count(cluster) == len(accepted)
        time.sleep(2)  # nothing more arrives: no second copy of a redelivered job
        assert mailbox_count(cluster) == len(accepted)
        for service in ("send", "local"):
            assert cluster.child_pids(service), f"{service} was not restarted"
    finally:
        cluster.stop()
