"""QMTP under the same defences as SMTP (defences #12): a client listed by a DNS blocklist,
one over its message or recipient rate, and a message Rspamd rejects are refused package by
package, with the verdict SMTP would give formatted as QMTP's ``Z``/``D``; relayclients are
exempt as on SMTP. The checks at the door (SPF, DKIM, DMARC, issue 11) judge QMTP packages
as they judge SMTP messages, and a forged ``Authentication-Results:`` is removed from both."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dkim
import pytest

from qmesh.cli.natsd import NatsServer
from qmesh.dkim.keys import generate, parse_key
from tests.dnsserver import DnsFixture, serving, txt
from tests.integration.test_defences import (
    close_clients,  # noqa: F401  (autouse)
    make_settings,
    replicas,
)
from tests.integration.test_dnsbl import CLEAN, LISTED, TXT, dnsbl_settings
from tests.integration.test_dnsbl import dns as dns
from tests.integration.test_rspamd import GTUBE
from tests.integration.test_rspamd import rspamd as rspamd
from tests.integration.test_smtpd import DOMAIN, qmtp_package, read_netstring

pytestmark = pytest.mark.integration

ALICE = f"alice@{DOMAIN}".encode()
LISTING = f"Z{TXT} (#4.7.1)".encode()
RATE_LIMIT = b"Ztoo many messages from your address, try again later (#4.7.0)"


@contextlib.asynccontextmanager
async def qmtp(
    port: int, source: str
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def send(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], body: str, *rcpts: bytes
) -> list[bytes]:
    reader, writer = conn
    message = f"\nFrom: joe@far.test\nSubject: qmtp\n\n{body}\n".encode()
    writer.write(qmtp_package(message, b"joe@far.test", *(rcpts or (ALICE,))))
    await writer.drain()
    return [await read_netstring(reader) for _ in rcpts or (ALICE,)]


async def test_a_listed_client_is_refused_over_qmtp_and_relayclients_are_not(
    private_nats: NatsServer, tmp_path: Path, dns: DnsFixture
) -> None:
    controls = {"dnsbl": "bl.test", "relayclients": "127.0.0.8/32"}
    settings = dnsbl_settings(private_nats, tmp_path, f"127.0.0.1:{dns.port}", controls)
    async with replicas(settings, 1) as (stack,):
        port = stack.port("qmtp")
        async with qmtp(port, LISTED) as conn:
            assert await send(conn, "one", ALICE, b"bob@example.test") == [LISTING] * 2
            assert await send(conn, "two") == [LISTING]  # every package of it
        async with qmtp(port, CLEAN) as conn:
            assert (await send(conn, "clean"))[0].startswith(b"Kok ")
        assert len(await stack.queued()) == 1
    dns.records[("8.0.0.127.bl.test", "A")] = ["127.0.0.2"]
    async with replicas(settings, 1) as (stack,), qmtp(stack.port("qmtp"), "127.0.0.8") as conn:
        assert (await send(conn, "relayed"))[0].startswith(b"Kok ")


async def test_a_permanent_zone_is_d_over_qmtp(
    private_nats: NatsServer, tmp_path: Path, dns: DnsFixture
) -> None:
    controls = {"dnsbl": "!perm.test:Mail from your address is refused"}
    settings = dnsbl_settings(private_nats, tmp_path, f"127.0.0.1:{dns.port}", controls)
    async with replicas(settings, 1) as (stack,), qmtp(stack.port("qmtp"), LISTED) as conn:
        assert await send(conn, "x") == [b"DMail from your address is refused (#5.7.1)"]
        assert await stack.queued() == []


async def test_message_and_recipient_rates_hold_over_qmtp_and_smtp_together(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    controls = {"clientmessages": "3", "clientrecipients": "4"}
    settings = make_settings(private_nats.url, tmp_path, controls)
    if time.time() % 60 > 50:  # the whole test inside one minute's window
        await asyncio.sleep(61 - time.time() % 60)
    async with replicas(settings, 2) as (a, b):
        async with qmtp(a.port("qmtp"), "127.0.18.1") as conn:
            assert (await send(conn, "m1", ALICE, ALICE, ALICE))[0].startswith(b"Kok ")
            # two more recipients would be five in this minute: refused, not counted
            assert await send(conn, "m2", ALICE, ALICE) == [RATE_LIMIT] * 2
            assert (await send(conn, "m3"))[0].startswith(b"Kok ")
        async with qmtp(b.port("qmtp"), "127.0.18.1") as conn:  # the other replica
            assert await send(conn, "m4") == [RATE_LIMIT]  # four recipients already
        async with qmtp(b.port("qmtp"), "127.0.18.2") as conn:  # another client
            assert (await send(conn, "m5"))[0].startswith(b"Kok ")
        assert len(await a.queued()) == 3


async def test_rspamd_judges_qmtp_packages(
    private_nats: NatsServer, tmp_path: Path, rspamd: str
) -> None:
    settings = make_settings(private_nats.url, tmp_path, {"rspamd": rspamd})
    async with replicas(settings, 1) as (stack,):
        async with qmtp(stack.port("qmtp"), "127.0.19.1") as conn:
            assert (
                await send(conn, GTUBE, ALICE, b"bob@example.test")
                == [b"Dmessage rejected as spam (#5.7.1)"] * 2
            )
            assert await stack.queued() == []
            assert (await send(conn, "a clean one"))[0].startswith(b"Kok ")
        [body] = await stack.queued()
        assert b"\nX-Spam-Flag: NO\n" in body and b"with QMTP;" in body


BANK_KEY = generate("rsa")
STATEMENT = (
    b"From: Joe <joe@bank.test>\nTo: alice@example.test\nSubject: statement\n"
    b"Date: Sun, 06 Dec 2026 02:00:00 +0000\nMessage-ID: <q@bank.test>\n\nyour statement\n"
)
FORGED_RESULT = f"Authentication-Results: {DOMAIN}; dkim=pass header.d=bank.test\n".encode()


@pytest.fixture(scope="module")
def bank_dns() -> Iterator[DnsFixture]:
    """bank.test publishes SPF for 127.0.31.1, a DKIM key and ``p=reject`` (RFC 7489)."""
    records = {
        ("s1._domainkey.bank.test", "TXT"): [txt(parse_key(BANK_KEY).record())],
        ("bank.test", "TXT"): [txt("v=spf1 ip4:127.0.31.1 -all")],
        ("_dmarc.bank.test", "TXT"): [txt("v=DMARC1; p=reject")],
    }
    with serving(records) as server:
        yield server


async def send_package(port: int, source: str, message: bytes) -> bytes:
    async with qmtp(port, source) as (reader, writer):
        writer.write(qmtp_package(b"\n" + message, b"joe@bank.test", ALICE))
        await writer.drain()
        return await read_netstring(reader)


async def test_qmtp_packages_get_the_checks_at_the_door(
    private_nats: NatsServer, tmp_path: Path, bank_dns: DnsFixture
) -> None:
    """Issue 11 over QMTP: RFC 7208, RFC 6376 and RFC 7489 judged against a real DNS server,
    the result in our Authentication-Results (RFC 8601), a forged one claiming our
    authserv-id removed (RFC 8601 section 5); with ``dmarcreject`` a forgery for a
    ``p=reject`` domain is a permanent D, and a relayclient is not checked."""
    signed = dkim.sign(STATEMENT, b"s1", b"bank.test", BANK_KEY, include_headers=[b"from"])
    controls = {"relayclients": "127.0.31.9/32"}
    settings = dnsbl_settings(private_nats, tmp_path, bank_dns.server, controls)
    async with replicas(settings, 1) as (stack,):
        port = stack.port("qmtp")
        assert (await send_package(port, "127.0.31.1", signed + STATEMENT)).startswith(b"Kok ")
        assert (await send_package(port, "127.0.31.2", FORGED_RESULT + STATEMENT)).startswith(
            b"Kok "
        )
        genuine, forged = await stack.queued()
    assert f"\nAuthentication-Results: {DOMAIN};".encode() in genuine
    for word in (b"spf=pass", b"dkim=pass", b"dmarc=pass"):
        assert word in genuine
    assert b"dmarc=fail (p=reject) header.from=bank.test" in forged
    assert b"dkim=pass" not in forged and forged.count(b"Authentication-Results:") == 1

    (tmp_path / "control" / "dmarcreject").write_text("1\n")
    async with replicas(settings, 1) as (stack,):
        port = stack.port("qmtp")
        refused = await send_package(port, "127.0.31.2", FORGED_RESULT + STATEMENT)
        assert refused.startswith(b"Dmessage refused: the From domain bank.test")
        relayed = await send_package(port, "127.0.31.9", FORGED_RESULT + STATEMENT)
        assert relayed.startswith(b"Kok ")  # a relayclient is not checked, only stripped
        [kept] = [m for m in await stack.queued() if m not in (genuine, forged)]
    assert b"Authentication-Results" not in kept and b"with QMTP;" in kept
