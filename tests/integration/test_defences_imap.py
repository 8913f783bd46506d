"""Login throttling on IMAP and IMAPS (defences #12), as on POP3: 50 wrong passwords are
slowed, then blocked with ``NO [UNAVAILABLE]`` (RFC 5530); the owner logs in from elsewhere; an
unknown account and a wrong password take the same time. A nats-server of the test's own holds
the counts; clients speak from 127.0.x.y."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qmesh.cli.natsd import NatsServer
from services.imapd.app import build
from services.imapd.server import ImapServer
from tests.integration.login_sites import PASSWORD, client_tls, login_site

pytestmark = pytest.mark.integration

DOMAIN = "imap.example.test"
ALICE = f"alice@{DOMAIN}"
FAILED = b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
BLOCKED = b"a1 NO [UNAVAILABLE] Too many failed logins; try again later.\r\n"


def imapd(
    nats_url: str, tmp_path: Path, controls: dict[str, str]
) -> contextlib.AbstractAsyncContextManager[ImapServer]:
    return login_site(
        build, ImapServer, {"imap_port": 0, "imaps_port": 0}, nats_url, tmp_path, DOMAIN, controls
    )


async def login(
    server: ImapServer, source: str, user: str, password: str, *, tls: bool = False
) -> tuple[bytes, float]:
    """LOGIN on a new connection from ``source``: its tagged reply and its time."""
    port = server.ports["imaps" if tls else "imap"]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_tls() if tls else None, local_addr=(source, 0)
    )
    try:
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"* OK")
        started = time.monotonic()
        writer.write(f'a1 LOGIN "{user}" "{password}"\r\n'.encode())
        while not (reply := await asyncio.wait_for(reader.readline(), 30)).startswith(b"a1 "):
            assert reply.startswith(b"* "), reply
        return reply, time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def authenticate(server: ImapServer, source: str, user: str, password: str) -> bytes:
    """AUTHENTICATE PLAIN, the credentials after the continuation: the tagged reply."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.ports["imap"], local_addr=(source, 0)
    )
    try:
        await asyncio.wait_for(reader.readline(), 10)
        writer.write(b"a1 AUTHENTICATE PLAIN\r\n")
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"+")
        writer.write(base64.b64encode(f"\0{user}\0{password}".encode()) + b"\r\n")
        while not (reply := await asyncio.wait_for(reader.readline(), 30)).startswith(b"a1 "):
            pass
        return reply
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def test_password_guessing_on_imap_and_imaps_is_slowed_then_blocked(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    controls = {"authfailures": "10", "authdelay": "40"}
    async with imapd(private_nats.url, tmp_path, controls) as server:
        outcomes = [
            await login(server, "127.0.15.1", ALICE, f"guess{i}", tls=i % 2 == 1) for i in range(50)
        ]
        replies = [r for r, _ in outcomes]
        assert replies[:10] == [FAILED] * 10 and replies[10:] == [BLOCKED] * 40
        assert outcomes[9][1] > outcomes[0][1] + 0.25  # the delay grows
        assert (await login(server, "127.0.15.1", ALICE, PASSWORD))[0] == BLOCKED
        # AUTHENTICATE is the same door
        assert await authenticate(server, "127.0.15.1", ALICE, PASSWORD) == BLOCKED
        reply, _ = await login(server, "127.0.15.2", ALICE, PASSWORD, tls=True)
        assert reply.startswith(b"a1 OK"), reply  # the owner, from elsewhere
        reply = await authenticate(server, "127.0.15.3", ALICE, PASSWORD)
        assert reply.startswith(b"a1 OK"), reply


async def test_authenticate_failures_count_and_block(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    async with imapd(private_nats.url, tmp_path, {"authfailures": "3", "authdelay": "10"}) as s:
        replies = [await authenticate(s, "127.0.16.1", ALICE, "wrong") for _ in range(4)]
        assert replies == [FAILED] * 3 + [BLOCKED]
        assert (await login(s, "127.0.16.1", ALICE, PASSWORD))[0] == BLOCKED


async def test_imap_unknown_account_and_wrong_password_take_the_same_time(
    private_nats: NatsServer, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    async with imapd(private_nats.url, tmp_path, {"authdelay": "20"}) as server:
        wrong, unknown = [], []
        for i in range(15):
            reply, took = await login(server, f"127.0.17.{2 * i + 1}", ALICE, "wrong")
            assert reply == FAILED
            wrong.append(took)
            reply, took = await login(server, f"127.0.17.{2 * i + 2}", f"nobody{i}@{DOMAIN}", "x")
            assert reply == FAILED
            unknown.append(took)
        w, u = statistics.median(wrong), statistics.median(unknown)
        record_property("median_ms", {"wrong_password": w * 1000, "unknown_account": u * 1000})
        assert abs(w - u) < max(0.25 * min(w, u), 0.02), (w, u)
