"""The checks at the door through ``qmesh up`` (issue 11): smtpd asks the loopback DNS server
named by ``QMESH_DNS_SERVERS`` and records SPF, DKIM and DMARC in Authentication-Results.

Clients connect from 127.0.0.3 (authorised by bank.test's SPF record) and 127.0.0.4 (not);
127.0.0.1, this host itself, is not checked.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator

import dkim
import pytest

from qmesh.dkim.keys import generate, parse_key
from tests.dnsserver import DnsFixture, serving, txt
from tests.e2e.cluster import Cluster, start_cluster, write_controls
from tests.e2e.conftest import Sink, profile_controls
from tests.e2e.test_mail_flow import pop3_messages, wait_for

pytestmark = pytest.mark.e2e

PEM = generate("rsa")
GOOD_IP, BAD_IP = "127.0.0.3", "127.0.0.4"
USER, PASSWORD = "alice@mx.example.test", "alice-pw"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsFixture]:
    records = {
        ("s1._domainkey.bank.test", "TXT"): [txt(parse_key(PEM).record())],
        ("bank.test", "TXT"): [txt(f"v=spf1 ip4:{GOOD_IP} -all")],
        ("client.bank.test", "TXT"): [txt(f"v=spf1 ip4:{GOOD_IP} -all")],
        ("_dmarc.bank.test", "TXT"): [txt("v=DMARC1; p=reject")],
        ("shop.test", "TXT"): [txt("v=spf1 -all")],
        ("_dmarc.shop.test", "TXT"): [txt("v=DMARC1; p=quarantine")],
    }
    with serving(records, silent={"slow.test", "_dmarc.slow.test"}) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, dns: DnsFixture) -> Iterator[Cluster]:
    sink = Sink()  # nothing is relayed here; the profile only needs a port
    controls = profile_controls(sink.port) | {"databytes": "12000000"}
    c = start_cluster(
        tmp_path_factory.mktemp("door") / "site",
        controls,
        extra_env={"QMESH_DNS_SERVERS": dns.server},
    )
    try:
        add = c.cli("user", "add", USER, "--password-stdin", stdin=f"{PASSWORD}\n")
        assert add.returncode == 0, add.stderr
        yield c
    finally:
        c.stop()


def send(cluster: Cluster, source: str, sender: str, message: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP(
        "127.0.0.1", cluster.smtp_port, timeout=60, source_address=(source, 0)
    ) as smtp:
        smtp.ehlo("client.bank.test")
        smtp.mail(sender)
        code, reply = smtp.rcpt("alice@example.test")
        assert code == 250, reply
        try:
            return smtp.data(message)
        except smtplib.SMTPDataError as err:
            text = err.smtp_error
            return err.smtp_code, text if isinstance(text, bytes) else text.encode()


def delivered(cluster: Cluster, marker: bytes) -> bytes:
    """The message in alice's mailbox whose body holds ``marker``."""
    found: list[bytes] = []

    def arrived() -> bool:
        found[:] = [m for m in pop3_messages(cluster, USER, PASSWORD) if marker in m]
        return bool(found)

    wait_for(arrived, what=f"the message {marker!r} in alice's mailbox")
    return found[0]


def results(message: bytes) -> bytes:
    """Our Authentication-Results field, unfolded."""
    head = message.split(b"\n\n", 1)[0].replace(b"\n\t", b" ")
    mine = [
        line
        for line in head.split(b"\n")
        if line.lower().startswith(b"authentication-results: mx.example.test;")
    ]
    assert len(mine) == 1, head
    return mine[0]


def mail(marker: str, sender: str = "joe@bank.test", extra: bytes = b"") -> bytes:
    return (
        f"From: Joe <{sender}>\r\nTo: alice@example.test\r\nSubject: {marker}\r\n"
        f"Message-ID: <{marker}@bank.test>\r\n".encode()
        + extra
        + f"\r\n{marker} body\r\n".encode()
    )


def test_genuine_signed_mail_passes(cluster: Cluster) -> None:
    """RFC 6376 (signed here with dkimpy), RFC 7208 (the client is authorised), RFC 7489
    (aligned), RFC 8601 (one field under our authserv-id, the me control)."""
    message = mail("genuine")
    signed = dkim.sign(message, b"s1", b"bank.test", PEM, include_headers=[b"from", b"subject"])
    code, _ = send(cluster, GOOD_IP, "joe@bank.test", signed + message)
    assert code == 250
    field = results(delivered(cluster, b"genuine body"))
    assert b"spf=pass smtp.mailfrom=joe@bank.test" in field
    assert b"spf=pass smtp.helo=client.bank.test" in field
    assert b"dkim=pass header.d=bank.test header.s=s1" in field
    assert b"dmarc=pass (p=reject) header.from=bank.test" in field


def test_forgery_recorded_then_refused_with_dmarcreject(cluster: Cluster) -> None:
    """RFC 7489 section 6.7: off, a forgery for a p=reject domain is delivered with dmarc=fail;
    with dmarcreject 1 it is refused 550 5.7.1. A forged result claiming our id is removed
    (RFC 8601 section 5)."""
    forged = b"Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\n"
    code, _ = send(cluster, BAD_IP, "joe@bank.test", mail("forged1", extra=forged))
    assert code == 250
    message = delivered(cluster, b"forged1 body")
    field = results(message)
    assert b"dmarc=fail (p=reject) header.from=bank.test" in field
    assert b"spf=fail smtp.mailfrom=joe@bank.test" in field
    assert b"dkim=pass" not in message

    write_controls(cluster.control, {"dmarcreject": "1"})
    try:
        deadline = time.monotonic() + 30
        while True:  # the control is read again within seconds (CTL-07)
            code, reply = send(cluster, BAD_IP, "joe@bank.test", mail("forged2"))
            if code != 250 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert code == 550, reply
        assert reply.startswith(b"5.7.1 message refused: the From domain bank.test")

        code, _ = send(cluster, BAD_IP, "joe@shop.test", mail("quarantined", "joe@shop.test"))
        assert code == 250  # p=quarantine: taken, marked
        message = delivered(cluster, b"quarantined body")
        assert b"\nX-Qmesh-Quarantine: dmarc\n" in message
        assert b"dmarc=fail (p=quarantine) header.from=shop.test" in results(message)
    finally:
        (cluster.control / "dmarcreject").unlink()


def test_dns_timeout_and_huge_header_are_delivered_with_clear_results(cluster: Cluster) -> None:
    """RFC 7208 section 2.6.6, RFC 7489 section 6.6.3: a DNS server that does not answer is
    temperror and never refuses; a 10 MB header block is permerror; both are delivered."""
    started = time.monotonic()
    code, _ = send(cluster, BAD_IP, "joe@slow.test", mail("slowdns", "joe@slow.test"))
    assert code == 250
    assert time.monotonic() - started < 30
    field = results(delivered(cluster, b"slowdns body"))
    assert b"spf=temperror smtp.mailfrom=joe@slow.test" in field
    assert b"dmarc=temperror" in field

    filler = b"X-Filler: " + b"a" * 990 + b"\r\n"
    code, _ = send(cluster, GOOD_IP, "joe@bank.test", mail("hugehead", extra=filler * 10000))
    assert code == 250
    field = results(delivered(cluster, b"hugehead body"))
    assert b"spf=pass smtp.mailfrom=joe@bank.test" in field
    assert b"dkim=permerror" in field and b"dmarc=permerror" in field


def test_this_host_is_not_checked(cluster: Cluster) -> None:
    """Issue 11: 127.0.0.1 (this host) is not checked, so it pays no DNS lookup; a forged
    result claiming our id is removed all the same (RFC 8601 section 5)."""
    forged = b"Authentication-Results: mx.example.test; dmarc=pass header.from=bank.test\r\n"
    code, _ = send(cluster, "127.0.0.1", "joe@slow.test", mail("local", extra=forged))
    assert code == 250
    message = delivered(cluster, b"local body")
    assert b"Authentication-Results" not in message
