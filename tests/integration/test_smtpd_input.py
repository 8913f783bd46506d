"""What smtpd takes in on the wire (hardening #1, #4, #5, #13): the real service on a real
nats-server and queue store, driven over raw SMTP and QMTP sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from qmesh.runtime.settings import Settings
from tests.integration.test_smtpd import (
    DOMAIN,
    Client,
    Stack,
    certificate,
    close_clients,
    open_stack,
    qmtp_package,
    read_netstring,
    settings,
)

pytestmark = pytest.mark.integration

__all__ = ["certificate", "close_clients", "settings"]  # fixtures shared with test_smtpd

RELAYING_DENIED = "553 5.7.1 sorry, relaying denied"


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    """test_smtpd's controls plus ``percenthack`` listing envnoathost (``me``)."""
    (settings.control / "percenthack").write_text(f"{DOMAIN}\nexample.test\n")
    async for s in open_stack(settings):
        yield s


async def qmtp(stack: Stack, package: bytes, responses: int) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port("qmtp"))
    try:
        writer.write(package)
        await writer.drain()
        return [await read_netstring(reader) for _ in range(responses)]
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    "path",
    [
        "<user%other.example>",
        '<"user%other.example">',
        "<user%other.example%example.test>",
        '<@example.test:"user%other.example">',
        "<user%other.example@example.test>",
    ],
)
async def test_smtpd_43_percent_hack_never_relays_for_a_stranger(stack: Stack, path: str) -> None:
    """hardening #1: with or without ``@``, the recipient is judged after SEND-10/SEND-11."""
    c = await Client.connect(stack.port())
    assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
    assert await c.cmd(f"RCPT TO:{path}") == RELAYING_DENIED
    assert await c.cmd("DATA") == "503 5.5.1 RCPT first (#5.5.1)"
    assert await stack.queued() == []


async def test_qmtp_13_percent_hack_never_relays_for_a_stranger(stack: Stack) -> None:
    hostile = [b"user%other.example", b'"user%other.example"', b"user%other.example@example.test"]
    responses = await qmtp(
        stack, qmtp_package(b"\nSubject: x\n\nhi\n", b"joe@far.test", *hostile), len(hostile)
    )
    assert responses == [b"Dsorry, relaying denied (#5.7.1)"] * len(hostile)
    assert await stack.queued() == []


async def test_smtpd_31_control_characters_never_enter_an_envelope(stack: Stack) -> None:
    """hardening #4: a bare CR in a path would become a header line in Return-Path or
    Delivered-To (and at the next hop after a forward): refused at MAIL and RCPT."""
    c = await Client.connect(stack.port())
    await c.send(b"MAIL FROM:<joe\rX-Injected: yes@far.test>\r\n")
    assert await c.reply() == "501 5.1.7 bad sender address syntax"
    await c.send(b'MAIL FROM:<"joe\\\rX"@far.test>\r\n')
    assert await c.reply() == "501 5.1.7 bad sender address syntax"
    assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
    await c.send(b"RCPT TO:<alice\r@example.test>\r\n")
    assert await c.reply() == "501 5.1.3 bad recipient address syntax"
    await c.send(b'RCPT TO:<"alice\tX"@example.test>\r\n')
    assert await c.reply() == "501 5.1.3 bad recipient address syntax"
    assert await c.cmd("DATA") == "503 5.5.1 RCPT first (#5.5.1)"
    replies = await qmtp(
        stack,
        qmtp_package(b"\nSubject: x\n\nhi\n", b"joe\r@far.test", b"alice@example.test")
        + qmtp_package(b"\nSubject: x\n\nhi\n", b"joe@far.test", b"alice\r@example.test"),
        2,
    )
    assert replies == [
        b"Dunacceptable sender (#5.1.7)",
        b"Dsorry, I can't handle that recipient (#5.1.3)",
    ]
    assert await stack.queued() == []


async def test_smtpd_51_nul_before_a_dot_is_refused_and_nothing_is_queued(stack: Stack) -> None:
    """hardening #5: CR LF NUL "." CR LF is no end of data here, but would be at a next hop
    that drops NUL; the whole message is refused and the session goes on."""
    c = await Client.connect(stack.port())
    assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
    assert await c.cmd("RCPT TO:<alice@example.test>") == "250 2.1.5 ok"
    assert await c.cmd("DATA") == "354 go ahead"
    await c.send(
        b"Subject: s\r\n\r\na\r\n\x00.\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<x@example.test>\r\n"
        b"DATA\r\nsmuggled\r\n.\r\n"
    )
    assert await c.reply() == "554 5.6.0 sorry, a message may not contain NUL characters (#5.6.0)"
    assert await c.cmd("NOOP") == "250 2.0.0 ok"
    replies = await qmtp(
        stack,
        qmtp_package(b"\nSubject: q\n\na\n\x00.\nb\n", b"joe@far.test", b"alice@example.test"),
        1,
    )
    assert replies == [b"Dsorry, a message may not contain NUL characters (#5.6.0)"]
    assert await stack.queued() == []
