"""``qmesh up``'s own NATS: locked to per-service users (hardening #2), one meaning for
``QMESH_NATS_URL`` (hardening #15), and supervised like the services (hardening #9)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import stat
import subprocess
import time
from pathlib import Path

import nats
import pytest

from qmesh.bus.jetstream import inbox_prefix
from qmesh.cli.connect import resolve_nats
from qmesh.cli.natsd import read_varz
from qmesh.cli.natsusers import password_file
from qmesh.contract import subjects
from tests.deploy.test_nats_permissions import User, anonymous_connect
from tests.e2e.cluster import QMESH, SERVICES, Cluster, start_cluster
from tests.e2e.conftest import Sink, profile_controls
from tests.e2e.test_mail_flow import pop3_messages, wait_for

pytestmark = pytest.mark.e2e

ROLES = (*SERVICES, "admin")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _as(cluster: Cluster, role: str) -> User:
    errors: list[str] = []

    async def record(err: Exception) -> None:
        errors.append(str(err))

    nc = await nats.connect(
        (cluster.data / "nats.url").read_text().strip(),
        user=f"qmesh-{role}",
        password=password_file(cluster.data, role).read_text().strip(),
        inbox_prefix=inbox_prefix(role),
        allow_reconnect=False,
        error_cb=record,
    )
    return User(role, nc, errors)


async def _strangers_are_refused(cluster: Cluster) -> None:
    url = (cluster.data / "nats.url").read_text().strip()
    assert b"Authorization Violation" in await anonymous_connect(url)
    smtpd = await _as(cluster, "smtpd")
    try:
        write = f"$KV.{subjects.KV_DIRECTORY}.account.mx.example.test.alice"
        await smtpd.refused(lambda: smtpd.nc.publish(write, b"{}"), write)
        spy = f"$KV.{subjects.KV_DIRECTORY}.>"
        await smtpd.refused(lambda: smtpd.nc.subscribe(spy), f'subscription to "{spy}')
        await smtpd.refused(
            lambda: smtpd.js.key_value(subjects.KV_QUEUE), f"STREAM.INFO.KV_{subjects.KV_QUEUE}"
        )
        forged = subjects.JOB_LOCAL
        await smtpd.refused(lambda: smtpd.nc.publish(forged, b"{}"), f'"{forged}"')
        redirect = f"$JS.API.STREAM.UPDATE.{subjects.STREAM_LOCAL}"
        await smtpd.refused(lambda: smtpd.nc.publish(redirect, b"{}"), redirect)
    finally:
        await smtpd.nc.close()


@pytest.fixture
def cluster(tmp_path: Path, sink: Sink) -> Cluster:
    return start_cluster(tmp_path / "site", profile_controls(sink.port))


def test_hardening_2_qmesh_up_locks_its_nats(cluster: Cluster) -> None:
    """Only the owner's files open the bus: 0600 passwords, anonymous clients refused, each
    service confined to its permissions; the commands find the admin credential by
    themselves and still work."""
    try:
        secrets = password_file(cluster.data, "admin").parent
        assert _mode(secrets) == 0o700
        for role in ROLES:
            assert _mode(password_file(cluster.data, role)) == 0o600, role
        assert _mode(cluster.data / "nats" / "qmesh-up.conf") == 0o600
        asyncio.run(_strangers_are_refused(cluster))

        add = cluster.cli("user", "add", "alice@mx.example.test", "--password-stdin", stdin="pw\n")
        assert add.returncode == 0, add.stderr
        listing = cluster.cli("user", "list", "mx.example.test")
        assert "alice" in listing.stdout, listing.stderr
        stat_ = cluster.cli("queue", "stat")
        assert stat_.returncode == 0, stat_.stderr
        env = {k: v for k, v in cluster.env.items() if k != "QMESH_NATS_URL"}
        found = resolve_nats(env)
        assert found.nats_user == "qmesh-admin"
        assert found.nats_password_file == password_file(cluster.data, "admin")
        for service in SERVICES:  # each service runs with its own credential
            log = (cluster.data / "log" / f"{service}.log").read_text().lower()
            assert "violation" not in log, service
    finally:
        cluster.stop()


def test_hardening_15_qmesh_up_refuses_a_nats_url_it_would_ignore(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QMESH_")}
    env.update({"QMESH_NATS_URL": "nats://10.9.9.9:4222", "QMESH_DATA": str(tmp_path / "d")})
    done = subprocess.run(
        [*QMESH, "up"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "QMESH_NATS_URL is set (nats://10.9.9.9:4222)" in done.stderr
    assert not (tmp_path / "d" / "nats").exists()  # no second server was started


def _nats_pid(cluster: Cluster) -> int:
    out = subprocess.run(
        ["pgrep", "-P", str(cluster.process.pid), "nats-server"],
        capture_output=True,
        text=True,
        check=False,
    )
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 1, out
    return pids[0]


def _synced_monitors(cluster: Cluster) -> list[str]:
    """The monitoring endpoints qmesh up named when it found sync_always in force."""
    return re.findall(
        r"NATS writes every JetStream message to disk before acknowledging it "
        r"\(sync_interval: always; monitoring (http://[0-9.]+:[0-9]+)\)",
        cluster.output.read_text(),
    )


def test_throughput_10_qmesh_ups_nats_fsyncs_before_it_acknowledges(cluster: Cluster) -> None:
    """A 250 promises the message survives a crash of the machine: qmesh up's nats-server
    says, on its own monitoring endpoint, that it fsyncs every JetStream write before the
    acknowledgement, and qmesh up reports so without a warning."""
    try:
        monitors = _synced_monitors(cluster)
        assert len(monitors) == 1, cluster.output.read_text()
        varz = read_varz(monitors[0])
        assert varz["jetstream"]["config"]["sync_always"] is True
        assert varz["port"] == int((cluster.data / "nats.url").read_text().rsplit(":", 1)[1])
        assert "WARNING" not in cluster.output.read_text()
    finally:
        cluster.stop()


def test_hardening_9_nats_is_restarted_with_its_data(cluster: Cluster) -> None:
    """SIGKILL nats-server under qmesh up: it comes back on the same port with the same data,
    and a message sent afterwards is delivered."""
    try:
        add = cluster.cli("user", "add", "alice@mx.example.test", "--password-stdin", stdin="pw\n")
        assert add.returncode == 0, add.stderr
        url = (cluster.data / "nats.url").read_text()
        killed = _nats_pid(cluster)
        os.kill(killed, signal.SIGKILL)
        wait_for(
            lambda: "nats-server running again" in cluster.output.read_text(),
            what="nats-server restarted",
        )
        assert _nats_pid(cluster) != killed
        assert (cluster.data / "nats.url").read_text() == url
        wait_for(  # throughput #10: the restarted server fsyncs every write too
            lambda: len(_synced_monitors(cluster)) == 2, what="sync_always after the restart"
        )
        assert read_varz(_synced_monitors(cluster)[-1])["jetstream"]["config"]["sync_always"]
        cluster.wait_ready()

        deadline = time.monotonic() + 60
        while True:  # smtpd answers 451 until its connection is back
            with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30) as smtp:
                smtp.ehlo("client.example")
                smtp.mail("joe@far.test")
                code, _ = smtp.rcpt("alice@mx.example.test")  # the directory survived
                if code == 250:
                    code, _ = smtp.data(b"Subject: after\r\n\r\nafter the restart\r\n")
                    break
            assert time.monotonic() < deadline, code
            time.sleep(0.5)
        assert code == 250
        wait_for(
            lambda: len(pop3_messages(cluster, "alice@mx.example.test", "pw")) == 1,
            timeout=60,
            what="the message sent after the restart in alice's mailbox",
        )
    finally:
        cluster.stop()
