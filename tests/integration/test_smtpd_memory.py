"""Memory per session does not grow with the message (SMTPD-73, SMTPD-55, QMTP-14; hardening #6).

smtpd runs as its own process (``python -m services.smtpd``) on a real nats-server and the
directory store, with ``databytes 0`` (no limit). A large message over SMTP and a larger QMTP
package go in; the growth of its peak resident set (``VmHWM`` in ``/proc/<pid>/status``) is
bounded, each ``250``/``K`` means the body is stored intact (ARCH-01), and nothing else is left
in the queue store.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from qmesh.bus.provision import provision_streams
from qmesh.store.header import read_header
from services.smtpd.qmtp import netstring
from tests.servers import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DOMAIN = "mx.example.test"
SMTP_BYTES = 64 << 20
QMTP_BYTES = 100 << 20
GROWTH_BOUND = 64 << 20  # a message held whole would cost its size, about three times over
LINE = 1000  # bytes a line on the wire, CR LF included


def lines(total: int, end: bytes) -> Iterator[bytes]:
    """Numbered lines (so a lost or repeated piece shows), about ``total`` bytes, in batches."""
    batch = []
    for i in range(total // LINE):
        batch.append(b"%08d " % i + b"x" * (LINE - 11) + end)  # the same text either way
        if len(batch) == 1024:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)


def vm(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` size in bytes (``VmHWM``: the peak resident set)."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def stored_digest(path: Path) -> str:
    """SHA-256 of a stored message after its three trace lines (QUEUE-03, SMTPD-58)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        read_header(f)  # the directory store's object header, if any
        for _ in range(3):
            f.readline()
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await asyncio.wait_for(reader.readline(), 120)
        assert line, "connection closed"
        if line[3:4] != b"-":
            return line.rstrip()


async def send_smtp(port: int, header: bytes, total: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert (await reply(reader)).startswith(b"220 ")
        for command in (b"HELO client.test", b"MAIL FROM:<joe@far.test>", f"RCPT TO:<a@{DOMAIN}>"):
            writer.write((command if isinstance(command, bytes) else command.encode()) + b"\r\n")
            assert (await reply(reader)).startswith(b"250 ")
        writer.write(b"DATA\r\n")
        answer = await reply(reader)
        if not answer.startswith(b"354 "):
            return answer
        writer.write(header)
        for batch in lines(total, b"\r\n"):
            writer.write(batch)
            await writer.drain()
        writer.write(b".\r\nQUIT\r\n")
        return await reply(reader)
    finally:
        writer.close()
        await writer.wait_closed()


async def send_qmtp(port: int, header: bytes, total: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        size = 1 + len(header) + sum(len(b) for b in lines(total, b"\n"))
        writer.write(b"%d:\n" % size + header)
        for batch in lines(total, b"\n"):
            writer.write(batch)
            await writer.drain()
        writer.write(
            b"," + netstring(b"joe@far.test") + netstring(netstring(f"b@{DOMAIN}".encode()))
        )
        length = await asyncio.wait_for(reader.readuntil(b":"), 120)
        return (await reader.readexactly(int(length[:-1]) + 1))[:-1]
    finally:
        writer.close()
        await writer.wait_closed()


def expected(header: bytes, total: int) -> str:
    digest = hashlib.sha256(header.replace(b"\r\n", b"\n"))
    for batch in lines(total, b"\n"):
        digest.update(batch)
    return digest.hexdigest()


async def until_accepting(port: int) -> None:
    """smtpd answers DATA with 354 once NATS is connected (SMTPD-50); wait for that."""
    for _ in range(100):
        if (await send_smtp(port, b"Subject: warm-up\r\n\r\n", 10 * LINE)).startswith(b"250 "):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("smtpd never accepted a message")


@pytest.fixture
def smtpd(nats_url: str, tmp_path: Path, control_dir: Path) -> Iterator[tuple[int, int, int, Path]]:
    for name, text in {
        "me": DOMAIN,
        "rcpthosts": DOMAIN,
        "rcptcheck": "0",
        "databytes": "0",
    }.items():
        (control_dir / name).write_text(text + "\n")
    smtp, submission, smtps, qmtp, http = free_ports(5)
    env = {
        **os.environ,
        "QMESH_NATS_URL": nats_url,
        "QMESH_CONTROL": str(control_dir),
        "QMESH_STORE": f"file://{tmp_path / 'store'}",
        "QMESH_QUEUE_BUCKET": "qmesh-queue",
        "QMESH_LISTEN_HOST": "127.0.0.1",
        "QMESH_HTTP_HOST": "127.0.0.1",
        "QMESH_HTTP_PORT": str(http),
        "QMESH_SMTP_PORT": str(smtp),
        "QMESH_SUBMISSION_PORT": str(submission),
        "QMESH_SMTPS_PORT": str(smtps),
        "QMESH_QMTP_PORT": str(qmtp),
    }
    log = (tmp_path / "smtpd.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.smtpd"], env=env, stdout=log, stderr=log
    )
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "smtpd.log").read_text()
                time.sleep(0.1)
        yield proc.pid, smtp, qmtp, tmp_path / "store" / "qmesh-queue" / "mess"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


async def test_smtpd_73_memory_stays_bounded_whatever_the_size(
    nats_url: str, smtpd: tuple[int, int, int, Path]
) -> None:
    pid, smtp, qmtp, queued = smtpd
    nc = await nats.connect(nats_url)
    try:
        await provision_streams(nc.jetstream())
    finally:
        await nc.close()
    await until_accepting(smtp)
    before = vm(pid, "VmHWM")

    header = b"Subject: large\r\n\r\n"
    assert (await send_smtp(smtp, header, SMTP_BYTES)).startswith(b"250 ")
    after_smtp = vm(pid, "VmHWM")
    response = await send_qmtp(qmtp, header.replace(b"\r\n", b"\n"), QMTP_BYTES)
    assert response.startswith(b"Kok "), response
    after_qmtp = vm(pid, "VmHWM")

    sys.stderr.write(
        f"smtpd peak RSS: {before >> 20} MiB before, +{(after_smtp - before) >> 20} MiB after "
        f"{SMTP_BYTES >> 20} MiB over SMTP, +{(after_qmtp - before) >> 20} MiB after "
        f"{QMTP_BYTES >> 20} MiB over QMTP\n"
    )
    assert after_qmtp - before < GROWTH_BOUND

    by_size = sorted(queued.iterdir(), key=lambda p: p.stat().st_size)
    assert len(by_size) == 3  # the warm-up and the two large ones; nothing else was stored
    assert stored_digest(by_size[1]) == expected(header, SMTP_BYTES)
    assert stored_digest(by_size[2]) == expected(header, QMTP_BYTES)
