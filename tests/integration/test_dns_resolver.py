"""The resolvers built from QMESH_DNS_SERVERS ask the servers named there (issue 11).

Against the loopback DNS server of tests/dnsserver.py: real UDP and TCP sockets on a free port.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.resolver
import pytest

from qmesh.dns.resolver import async_resolver, sync_resolver
from tests.dnsserver import DnsFixture, serving, txt

pytestmark = pytest.mark.integration

LONG = "v=DKIM1; k=rsa; p=" + "A" * 600  # more than one TXT string, more than 512 bytes


@pytest.fixture
def dns_server() -> Iterator[DnsFixture]:
    records = {
        ("example.test", "MX"): ["10 mx.example.test."],
        ("example.test", "TXT"): [txt("v=spf1 -all")],
        ("big._domainkey.example.test", "TXT"): [txt(LONG)],
        ("_25._tcp.mx.example.test", "TLSA"): ["3 1 1 " + "ab" * 32],
    }
    with serving(
        records,
        servfail={"broken.test"},
        silent={"slow.test"},
        secure={"_25._tcp.mx.example.test"},
    ) as server:
        yield server


async def test_async_resolver_asks_the_named_server(dns_server: DnsFixture) -> None:
    resolver = async_resolver(dns_server.server)
    answer = await resolver.resolve("example.test", "MX")
    assert [rd.to_text() for rd in answer] == ["10 mx.example.test."]
    assert ("example.test", "MX", "udp") in dns_server.queries


def test_sync_resolver_and_a_long_txt_over_tcp(dns_server: DnsFixture) -> None:
    resolver = sync_resolver(f"127.0.0.1:{dns_server.port}")
    resolver.use_edns(0, 0, 512)  # too small: the answer is truncated, then asked over TCP
    answer = resolver.resolve("big._domainkey.example.test", "TXT")
    assert b"".join(next(iter(answer)).strings).decode() == LONG
    assert ("big._domainkey.example.test", "TXT", "tcp") in dns_server.queries


async def test_ad_bit_is_asked_for_and_seen(dns_server: DnsFixture) -> None:
    resolver = async_resolver(dns_server.server)
    secure = await resolver.resolve("_25._tcp.mx.example.test", "TLSA")
    assert secure.response.flags & dns.flags.AD
    plain = await resolver.resolve("example.test", "TXT")
    assert not plain.response.flags & dns.flags.AD


async def test_nxdomain_servfail_and_silence(dns_server: DnsFixture) -> None:
    resolver = async_resolver(dns_server.server, lifetime=1.0)
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("nothing.test", "A")
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve("broken.test", "TXT")
    started = time.monotonic()
    with pytest.raises(dns.exception.Timeout):
        await resolver.resolve("slow.test", "TXT")
    assert time.monotonic() - started < 5


async def test_hostile_queries_do_not_stop_the_server(dns_server: DnsFixture) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x00", b"\xff" * 512, b"\x12\x34" + b"\x00" * 10):
            s.sendto(junk, ("127.0.0.1", dns_server.port))
    answer = await async_resolver(dns_server.server).resolve("example.test", "TXT")
    assert answer.rrset is not None
