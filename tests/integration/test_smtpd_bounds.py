"""What one client can take from one smtpd or pop3d replica: connections, time and memory
(SMTPD-55, SMTPD-70, SMTPD-73, QMTP-01, QMTP-14; hardening #6 and #7).

Real services on a real nats-server and the directory store; the clients are raw sockets,
some bound to other loopback addresses (all of 127/8 reaches this machine on Linux).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qmesh.runtime.settings import Settings
from services.pop3d.server import TOO_MANY
from services.smtpd.qmtp import TOO_BIG, netstring
from tests.integration import test_pop3d, test_smtpd
from tests.integration.test_smtpd import DOMAIN, Client, open_stack

# smtpd's stack, as test_smtpd builds it (databytes 2000, rcptcheck 0)
certificate = test_smtpd.certificate
settings = test_smtpd.settings
close_clients = test_smtpd.close_clients

pytestmark = pytest.mark.integration

TOO_MANY_SMTP = "421 4.7.0 too many connections from your address (#4.7.0)"
TIMEOUT = "451 4.4.2 timeout (#4.4.2)"


def control(settings: Settings, **files: str) -> Settings:
    for name, text in files.items():
        (settings.control / name).write_text(text + "\n")
    return settings


async def refused(c: Client) -> str:
    """The one reply before the server closes."""
    reply = await c.reply()
    assert await c.closed()
    return reply


async def trickle(c: Client, data: bytes, *, interval: float = 0.2, most: int = 200) -> str:
    """Send ``data`` a byte at a time (slowloris) until the server answers; its reply."""
    for byte in data[:most]:
        try:
            return await asyncio.wait_for(c.reply(), interval)
        except TimeoutError:
            await c.send(bytes([byte]))
    raise AssertionError("the server kept the trickling client")


async def test_smtpd_73_one_address_cannot_take_the_listener(settings: Settings) -> None:
    """Hardening #7: idle connections beyond maxconnip are refused; others are still served."""
    settings = settings.model_copy(update={"max_sessions": 30})
    async for stack in open_stack(settings):  # maxconnip: the default, 20
        held = [await Client.connect(stack.port()) for _ in range(20)]
        more = [await Client.connect(stack.port(), greet=False) for _ in range(40)]
        assert [await refused(c) for c in more] == [TOO_MANY_SMTP] * 40
        other = await Client.connect(stack.port(), source="127.0.0.2", greet=False)
        assert await other.reply() == f"220 {DOMAIN} ESMTP"
        assert await other.cmd("QUIT") == f"221 2.0.0 {DOMAIN}"
        await held[0].cmd("QUIT")
        again = await Client.connect(stack.port(), greet=False)  # a slot of its own is free
        assert await again.reply() == f"220 {DOMAIN} ESMTP"


async def test_smtpd_73_the_cap_counts_every_listener_and_zero_lifts_it(
    settings: Settings,
) -> None:
    async for stack in open_stack(control(settings, maxconnip="2")):
        await Client.connect(stack.port())
        await Client.connect(stack.port("submission"))
        assert await refused(await Client.connect(stack.port(), greet=False)) == TOO_MANY_SMTP
        qmtp = await asyncio.open_connection("127.0.0.1", stack.port("qmtp"))
        assert await asyncio.wait_for(qmtp[0].read(1), 10) == b""  # QMTP: closed, no text
        qmtp[1].close()
        await qmtp[1].wait_closed()
    async for stack in open_stack(control(settings, maxconnip="0")):
        for _ in range(5):
            await Client.connect(stack.port())


async def test_smtpd_70_a_command_line_must_arrive_whole_within_timeoutsmtpd(
    settings: Settings,
) -> None:
    """Hardening #7: one byte per interval no longer keeps the session (slowloris)."""
    async for stack in open_stack(control(settings, timeoutsmtpd="2")):
        c = await Client.connect(stack.port())
        assert await trickle(c, b"NOOP " + b"x" * 300) == TIMEOUT
        assert await c.closed()


async def test_smtpd_70_data_must_end_within_timeoutdata(settings: Settings) -> None:
    async for stack in open_stack(control(settings, timeoutsmtpd="5", timeoutdata="2")):
        c = await Client.connect(stack.port())
        assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
        assert await c.cmd(f"RCPT TO:<alice@{DOMAIN}>") == "250 2.1.5 ok"
        assert await c.cmd("DATA") == "354 go ahead"
        assert await trickle(c, b"Subject: slow\r\n\r\n" + b"x" * 300) == TIMEOUT
        assert await c.closed()
        assert await stack.queued() == []  # SMTPD-71: a partial DATA is never queued


async def test_smtpd_70_a_session_ends_at_timeoutsession(settings: Settings) -> None:
    async for stack in open_stack(control(settings, timeoutsession="2")):
        c = await Client.connect(stack.port())
        for _ in range(200):  # busy, never idle: only the session deadline can end it
            reply = await c.cmd("NOOP")
            if reply != "250 2.0.0 ok":
                break
            await asyncio.sleep(0.1)
        assert reply == TIMEOUT
        assert await c.closed()


async def test_qmtp_14_a_cr_encoded_package_over_databytes_is_refused(settings: Settings) -> None:
    """Hardening #6: databytes (2000 here) holds whatever the encoding; nothing is queued."""
    async for stack in open_stack(settings):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port("qmtp"))
        try:
            big = b"\r" + b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40  # CR-encoded
            small = b"\r" + b"Subject: ok\r\n\r\n" + b"y\r\n" * 900  # 2 bytes stored a line
            for message in (big, small):
                writer.write(
                    netstring(message)
                    + netstring(b"joe@far.test")
                    + netstring(netstring(f"alice@{DOMAIN}".encode()))
                )
            await writer.drain()
            first, second = [await response(reader) for _ in range(2)]
        finally:
            writer.close()
            await writer.wait_closed()
        assert first == TOO_BIG
        assert second.startswith(b"Kok ")  # QMTP-11: counted in its stored form
        [body] = await stack.queued()
        assert body.endswith(b"\nSubject: ok\n\n" + b"y\n" * 900)


async def response(reader: asyncio.StreamReader) -> bytes:
    """One QMTP response netstring."""
    length = await asyncio.wait_for(reader.readuntil(b":"), 10)
    data = await asyncio.wait_for(reader.readexactly(int(length[:-1]) + 1), 10)
    assert data.endswith(b",")
    return data[:-1]


@pytest.fixture
async def pop3(
    nats_url: str, tmp_path: Path, control_dir: Path, unique: str
) -> AsyncIterator[test_pop3d.Stack]:
    for name, text in {
        "me": f"mx-{unique}.test",
        "locals": f"mx-{unique}.test\nalias-{unique}.test",
        "maxconnip": "2",
    }.items():
        (control_dir / name).write_text(text + "\n")
    settings = Settings(
        nats_url=nats_url,
        control=control_dir,
        store=f"file://{tmp_path / 'store'}",
        mail_bucket=f"mail-{unique}",
        listen_host="127.0.0.1",
        http_host="127.0.0.1",
        http_port=0,
        pop3_port=0,
        pop3s_port=0,
    )
    async for stack in test_pop3d.open_stack(settings):
        yield stack


async def test_pop3d_one_address_cannot_take_the_listener(pop3: test_pop3d.Stack) -> None:
    """Hardening #7: pop3d shares the listeners, and so the per-client cap."""
    streams = []
    try:
        for source in ("127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2"):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", pop3.port, local_addr=(source, 0)
            )
            streams.append((reader, writer))
        greetings = [await asyncio.wait_for(r.readline(), 10) for r, _ in streams]
        assert [g[:3] for g in greetings] == [b"+OK", b"+OK", b"-ER", b"+OK"]
        assert greetings[2] == TOO_MANY
        assert await asyncio.wait_for(streams[2][0].read(1), 10) == b""
    finally:
        for _, writer in streams:
            writer.close()
            await writer.wait_closed()
