"""What smtpd takes in on the wire (hardening #1, #4, #5, #13): the real service on a real
nats-server and queue store, driven over raw SMTP and QMTP sockets."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import AsyncIterator

import pytest

from qmesh.cli.admin import add_admin_commands, run_admin
from qmesh.runtime.settings import Settings
from tests.integration.test_smtpd import (
    DOMAIN,
    RELAY,
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


async def admin(environ: dict[str, str], *argv: str) -> str:
    parser = argparse.ArgumentParser(prog="qmesh")
    add_admin_commands(parser.add_subparsers(dest="command", required=True))
    out, err = io.StringIO(), io.StringIO()
    code = await run_admin(parser.parse_args(argv), environ=environ, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    return out.getvalue()


async def rcpt_until(c: Client, address: str, expected: str) -> None:
    """RCPT until the reply is ``expected``: the domain watch follows a change within moments."""
    for _ in range(100):
        assert await c.cmd("RSET") == "250 2.0.0 flushed"
        assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
        if await c.cmd(f"RCPT TO:<{address}>") == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"RCPT TO:<{address}> never got {expected!r}")


async def test_smtpd_42_directory_domains_are_accepted_like_rcpthosts(
    stack: Stack, unique: str
) -> None:
    """hardening #13: ``qmesh domain add`` alone (no rcpthosts edit) makes the domain's mail
    welcome over SMTP and QMTP; ``qmesh domain del`` refuses it again, without a restart."""
    domain = f"{unique}.hosted.test"
    assert domain not in (stack.control / "rcpthosts").read_text()
    environ = {"QMESH_NATS_URL": stack.settings.nats_url, "QMESH_CONTROL": str(stack.control)}
    c = await Client.connect(stack.port())
    assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
    assert await c.cmd(f"RCPT TO:<bob@{domain}>") == RELAY
    assert "added domain" in await admin(environ, "domain", "add", domain)
    await rcpt_until(c, f"bob@{domain}", "250 2.1.5 ok")
    await c.send(b"DATA\r\n")
    assert await c.reply() == "354 go ahead"
    await c.send(b"Subject: welcome\r\n\r\n.\r\n")
    assert (await c.reply()).startswith("250 2.0.0 ok ")
    package = qmtp_package(b"\nSubject: q\n\n", b"joe@far.test", f"bob@{domain}".encode())
    assert (await qmtp(stack, package, 1))[0].startswith(b"Kok ")
    assert len(await stack.queued()) == 2

    await admin(environ, "user", "del", f"postmaster@{domain}")  # made by domain add
    await admin(environ, "domain", "del", domain)
    await rcpt_until(c, f"bob@{domain}", RELAY)
    assert await qmtp(stack, package, 1) == [
        b"Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
    ]
