"""DNS blocklists at the door, as rblsmtpd (defences #12), with a DNS server on loopback
named by ``QMESH_DNS_SERVERS``: a listed client hears the list's text at MAIL, relay and
authenticated clients do not, a permanent zone answers 553, and DNS that does not answer
never refuses mail."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmesh.cli.natsd import NatsServer
from qmesh.runtime.settings import Settings
from tests.dnsserver import DnsFixture
from tests.integration.test_defences import (
    add_alice,
    close_clients,  # noqa: F401  (autouse)
    greeting,
    make_settings,
    plain,
    replicas,
)
from tests.integration.test_smtpd import DOMAIN, PASSWORD, Client

pytestmark = pytest.mark.integration

LISTED, CLEAN = "127.0.0.9", "127.0.0.10"
TXT = "Listed by bl.test, see https://bl.test/lookup?127.0.0.9"


@pytest.fixture
def dns() -> Iterator[DnsFixture]:
    server = DnsFixture(
        {
            ("9.0.0.127.bl.test", "A"): ["127.0.0.2"],
            ("9.0.0.127.bl.test", "TXT"): [f'"{TXT}"'],
            ("9.0.0.127.perm.test", "A"): ["127.0.0.2"],
            ("10.0.0.127.bl.test", "A"): ["127.255.255.254"],  # the list's error code
        }
    )
    server.start()
    yield server
    server.stop()


def dnsbl_settings(
    nats: NatsServer, tmp_path: Path, servers: str, controls: dict[str, str]
) -> Settings:
    settings = make_settings(nats.url, tmp_path, controls)
    return settings.model_copy(update={"dns_servers": servers})


async def mail_from(port: int, source: str) -> str:
    c, reply = await greeting(port, source)
    assert reply.startswith("220 ")
    await c.cmd("EHLO client.test")
    return await c.cmd("MAIL FROM:<joe@far.test>")


async def test_a_listed_client_hears_the_lists_text_and_others_do_not(
    private_nats: NatsServer, tmp_path: Path, dns: DnsFixture
) -> None:
    settings = dnsbl_settings(private_nats, tmp_path, f"127.0.0.1:{dns.port}", {"dnsbl": "bl.test"})
    async with replicas(settings, 1) as (stack,):
        assert await mail_from(stack.port(), LISTED) == f"451 4.7.1 {TXT}"
        assert await mail_from(stack.port(), CLEAN) == "250 2.1.0 ok"  # 127.255.255.x lists none
        asked = len(dns.queries)
        assert await mail_from(stack.port(), LISTED) == f"451 4.7.1 {TXT}"
        assert len(dns.queries) == asked  # cached for the answer's TTL


async def test_a_permanent_zone_answers_553_with_its_own_text(
    private_nats: NatsServer, tmp_path: Path, dns: DnsFixture
) -> None:
    controls = {"dnsbl": "!perm.test:Mail from your address is refused"}
    settings = dnsbl_settings(private_nats, tmp_path, f"127.0.0.1:{dns.port}", controls)
    async with replicas(settings, 1) as (stack,):
        reply = await mail_from(stack.port(), LISTED)
        assert reply == "553 5.7.1 Mail from your address is refused"


async def test_relay_and_authenticated_clients_are_exempt(
    private_nats: NatsServer, tmp_path: Path, dns: DnsFixture
) -> None:
    controls = {"dnsbl": "bl.test", "relayclients": f"{LISTED}/32"}
    settings = dnsbl_settings(private_nats, tmp_path, f"127.0.0.1:{dns.port}", controls)
    async with replicas(settings, 1) as (stack,):
        assert await mail_from(stack.port(), LISTED) == "250 2.1.0 ok"
    (settings.control / "relayclients").unlink()
    async with replicas(settings, 1) as (stack,):
        await add_alice(settings)
        c = await Client.connect(stack.port("smtps"), tls=True, source=LISTED)
        await c.cmd("EHLO client.test")
        assert (await c.cmd(plain(f"alice@{DOMAIN}", PASSWORD))).startswith("235 ")
        assert await c.cmd("MAIL FROM:<alice@example.test>") == "250 2.1.0 ok"


async def test_dns_that_does_not_answer_never_refuses(
    private_nats: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # reads nothing, answers nothing
    silent.bind(("127.0.0.1", 0))
    try:
        servers = f"127.0.0.1:{silent.getsockname()[1]}"
        settings = dnsbl_settings(private_nats, tmp_path, servers, {"dnsbl": "bl.test"})
        async with replicas(settings, 1) as (stack,):
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="services.smtpd.dnsbl"):
                assert await mail_from(stack.port(), LISTED) == "250 2.1.0 ok"
            assert time.monotonic() - started < 10  # the lookup's lifetime bounds the wait
            assert any(r.getMessage() == "smtpd.dnsbl_failed" for r in caplog.records)
    finally:
        silent.close()
