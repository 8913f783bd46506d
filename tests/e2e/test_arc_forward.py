"""A `.qmail` forward through `qmesh up` leaves with an ARC set that validates (RFC 8617,
issue 11): SMTP in (smtpd checks the client, which is not loopback's 127.0.0.1, and writes
Authentication-Results with authserv-id `me`), send, local's forward with its Delivered-To line,
send, remote sealing with example.test's key, the sink."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import dns.exception
import dns.resolver
import pytest

from qmesh.dkim.keys import parse_key
from tests.dnsserver import DnsFixture, serving, txt
from tests.e2e.cluster import Cluster, start_cluster
from tests.e2e.conftest import Sink, profile_controls
from tests.e2e.test_mail_flow import wait_for

pytestmark = pytest.mark.e2e


CLIENT_IP = "127.0.0.5"  # smtpd checks every client but loopback's own address


@pytest.fixture
def dns_server() -> Iterator[DnsFixture]:
    records = {("far.test", "TXT"): [txt(f"v=spf1 ip4:{CLIENT_IP} -all")]}
    with serving(records) as server:
        yield server


@pytest.fixture
def cluster(tmp_path: Path, sink: Sink, dns_server: DnsFixture) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path / "site",
        profile_controls(sink.port),
        extra_env={"QMESH_DNS_SERVERS": dns_server.server},
    )
    try:
        yield c
    finally:
        c.stop()


def test_a_forwarded_message_carries_an_arc_set_that_validates(
    cluster: Cluster, sink: Sink
) -> None:
    keygen = cluster.cli("dkim", "keygen", "example.test", "--selector", "arc1")
    assert keygen.returncode == 0, keygen.stderr
    record = parse_key((cluster.control / "domainkeys/example.test/arc1").read_bytes()).record()
    add = cluster.cli("user", "add", "alice@mx.example.test", "--password-stdin", stdin="pw\n")
    assert add.returncode == 0, add.stderr
    rule = cluster.cli("rule", "set", "alice@mx.example.test", ".qmail", stdin="&fwd@sink.test\n")
    assert rule.returncode == 0, rule.stderr
    time.sleep(6)  # remote reads domainkeys/ again within a few seconds of a change
    with smtplib.SMTP(
        "127.0.0.1", cluster.smtp_port, timeout=30, source_address=(CLIENT_IP, 0)
    ) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("joe@far.test")
        assert smtp.rcpt("alice@example.test")[0] == 250
        code, _ = smtp.data(
            b"From: Joe <joe@far.test>\r\nTo: alice@example.test\r\nSubject: fwd\r\n"
            b"Message-ID: <arc-e2e@far.test>\r\n\r\nforward me\r\n"
        )
    assert code == 250
    wait_for(lambda: len(sink.messages) == 1, what="the forward at the sink")
    got = sink.messages[0].data
    assert b"Authentication-Results: mx.example.test" in got
    assert b"spf=pass" in got
    assert got.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test; s=arc1;")
    with serving({("arc1._domainkey.example.test", "TXT"): [txt(record)]}) as fixture:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = fixture.port

        def get_txt(name: bytes, timeout: int = 5) -> bytes | None:
            try:
                answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
            except dns.exception.DNSException:
                return None
            return b"".join(b"".join(rd.strings) for rd in answer)

        cv, _, reason = dkim.arc_verify(got, dnsfunc=get_txt)
    assert (cv, reason) == (b"pass", "success")
