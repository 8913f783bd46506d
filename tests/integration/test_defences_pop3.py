"""Login throttling on POP3 and POP3S (defences #12): 50 wrong passwords are slowed, then
blocked; the owner logs in from elsewhere; an unknown account and a wrong password take the
same time. A nats-server of the test's own holds the counts; clients speak from 127.0.x.y."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qmesh.cli.natsd import NatsServer
from services.pop3d.app import build
from services.pop3d.server import Pop3Server
from tests.integration.login_sites import PASSWORD, client_tls, login_site

pytestmark = pytest.mark.integration

DOMAIN = "pop.example.test"
FAILED = b"-ERR [AUTH] authorization failed\r\n"
BLOCKED = b"-ERR [SYS/TEMP] too many failed logins, try again later\r\n"


def pop3d(
    nats_url: str, tmp_path: Path, controls: dict[str, str]
) -> contextlib.AbstractAsyncContextManager[Pop3Server]:
    return login_site(
        build, Pop3Server, {"pop3_port": 0, "pop3s_port": 0}, nats_url, tmp_path, DOMAIN, controls
    )


async def login(
    server: Pop3Server, source: str, user: str, password: str, *, tls: bool = False
) -> tuple[bytes, float]:
    """USER and PASS on a new connection from ``source``: PASS's reply and its time."""
    port = server.ports["pop3s" if tls else "pop3"]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_tls() if tls else None, local_addr=(source, 0)
    )
    try:
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"+OK")
        writer.write(f"USER {user}\r\n".encode())
        assert await asyncio.wait_for(reader.readline(), 10) == b"+OK \r\n"
        started = time.monotonic()
        writer.write(f"PASS {password}\r\n".encode())
        reply = await asyncio.wait_for(reader.readline(), 30)
        return reply, time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def test_password_guessing_on_pop3_and_pop3s_is_slowed_then_blocked(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    controls = {"authfailures": "10", "authdelay": "40"}
    async with pop3d(private_nats.url, tmp_path, controls) as server:
        outcomes = [
            await login(server, "127.0.13.1", "alice", f"guess{i}", tls=i % 2 == 1)
            for i in range(50)
        ]
        replies = [r for r, _ in outcomes]
        assert replies[:10] == [FAILED] * 10 and replies[10:] == [BLOCKED] * 40
        assert outcomes[9][1] > outcomes[0][1] + 0.25  # the delay grows
        assert (await login(server, "127.0.13.1", "alice", PASSWORD))[0] == BLOCKED
        reply, _ = await login(server, "127.0.13.2", "alice", PASSWORD, tls=True)
        assert reply.startswith(b"+OK")  # the owner, from elsewhere


async def test_pop3_unknown_account_and_wrong_password_take_the_same_time(
    private_nats: NatsServer, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    async with pop3d(private_nats.url, tmp_path, {"authdelay": "20"}) as server:
        wrong, unknown = [], []
        for i in range(15):
            reply, took = await login(server, f"127.0.14.{2 * i + 1}", "alice", "wrong")
            assert reply == FAILED
            wrong.append(took)
            reply, took = await login(server, f"127.0.14.{2 * i + 2}", f"nobody{i}", "wrong")
            assert reply == FAILED
            unknown.append(took)
        w, u = statistics.median(wrong), statistics.median(unknown)
        record_property("median_ms", {"wrong_password": w * 1000, "unknown_account": u * 1000})
        assert abs(w - u) < max(0.25 * min(w, u), 0.02), (w, u)
