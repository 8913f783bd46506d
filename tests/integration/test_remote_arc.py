"""remote seals forwarded mail with ARC; what the next hop receives validates (RFC 8617, issue 11).

A real nats-server, the queue store, an aiosmtpd sink reached through smtproutes, and dkimpy's
arc_verify reading the sealing keys from the loopback DNS server. The forwarded message is put in
the queue directly, as local's forward leaves it: its Delivered-To line on top of the message
smtpd queued with our ``Authentication-Results:`` (authserv-id ``me``).
"""

from __future__ import annotations

import dkim
import dns.exception
import dns.resolver
import pytest

from qmesh.dkim.keys import generate, parse_key
from services.remote import metrics
from tests.dnsserver import DnsFixture, txt
from tests.integration import test_remote
from tests.integration.remote_peers import Sink
from tests.integration.test_remote import BASE_CONTROLS, Harness

pytestmark = pytest.mark.integration

harness = test_remote.harness
sink = test_remote.sink
close_peer_connections = test_remote.close_peer_connections

ME = BASE_CONTROLS["me"]
ORIGINAL = (
    b"Received: from mail.orig.test by relay.example.test; 6 Dec 2026 02:00:00 -0000\n"
    b"From: Joe <joe@orig.test>\n"
    b"To: Bob <bob@fwd.test>\n"
    b"Subject: forwarded\n"
    b"Date: Sun, 06 Dec 2026 02:00:00 +0000\n"
    b"Message-ID: <arc-1@orig.test>\n"
    b"\n"
    b"hello\n.leading dot\n"
)


def publish(harness: Harness, domain: str, selector: str = "a1") -> None:
    """An RSA key for ``domain`` in domainkeys/, its TXT record in the loopback DNS."""
    directory = harness.control / "domainkeys" / domain
    directory.mkdir(parents=True, exist_ok=True)
    data = generate("rsa")
    (directory / selector).write_bytes(data)
    (directory / "selector").write_text(selector + "\n")
    record = parse_key(data).record()
    harness.dns.records[(f"{selector}._domainkey.{domain}", "TXT")] = [txt(record)]


def lookup(fixture: DnsFixture) -> object:
    """dkimpy's dnsfunc, asking the loopback DNS server."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = fixture.port

    def get_txt(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip(".") + ".", "TXT", lifetime=timeout)
        except dns.exception.DNSException:
            return None
        return b"".join(b"".join(rd.strings) for rd in answer)

    return get_txt


def forward(results: str, message: bytes, address: str = "bob@fwd.test") -> bytes:
    return f"Delivered-To: {address}\nAuthentication-Results: {ME}; {results}\n".encode() + message


def count(result: str) -> float:
    return float(metrics.ARC.labels(result)._value.get())


async def test_a_forwarded_message_arrives_with_an_arc_set_that_validates(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    s, port = sink
    publish(harness, "fwd.test")
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    body = forward("spf=pass smtp.mailfrom=joe@orig.test; dkim=none; arc=none", ORIGINAL)
    result = await harness.deliver("ann@sink.test", sender="joe@orig.test", body=body)
    assert result.outcome == "delivered"
    (got,) = s.messages
    assert got.data.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=fwd.test; s=a1;")
    assert got.data.endswith(body.replace(b"\n", b"\r\n"))  # nothing of ours changed
    cv, _, reason = dkim.arc_verify(got.data, dnsfunc=lookup(harness.dns))
    assert (cv, reason) == (b"pass", "success")


async def test_a_second_forward_adds_instance_2_and_the_chain_validates(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    s, port = sink
    publish(harness, "fwd.test")
    publish(harness, "second.test", "b2")
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    first = forward("spf=pass smtp.mailfrom=joe@orig.test; arc=none", ORIGINAL)
    assert (await harness.deliver("ann@sink.test", body=first)).outcome == "delivered"
    hop1 = s.messages[0].data.replace(b"\r\n", b"\n")
    # it comes back in: smtpd removes the old field claiming our id and writes its own
    ours = f"Authentication-Results: {ME}; spf=pass smtp.mailfrom=joe@orig.test; arc=none\n"
    hop1 = hop1.replace(ours.encode(), b"")
    second = forward("dkim=none; arc=pass", hop1, "carol@second.test")
    assert (await harness.deliver("ann@sink.test", body=second)).outcome == "delivered"
    got = s.messages[1].data
    assert got.startswith(b"ARC-Seal: i=2; cv=pass; a=rsa-sha256; d=second.test; s=b2;")
    cv, results, reason = dkim.arc_verify(got, dnsfunc=lookup(harness.dns))
    assert (cv, reason) == (b"pass", "success")
    assert [(r["instance"], r["as-domain"]) for r in results] == [
        (2, b"second.test"),
        (1, b"fwd.test"),
    ]


async def test_a_malformed_arc_seal_is_sealed_cv_fail_and_the_message_delivered(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    """Hostile input: a broken ARC-Seal never stops or loses the message."""
    s, port = sink
    publish(harness, "fwd.test")
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    before = count("sealed_cv_fail")
    bad = b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x.test; s=s; b=!!!\xff not base64\n"
    body = forward("dkim=none; arc=pass", bad + ORIGINAL)
    result = await harness.deliver("ann@sink.test", body=body)
    assert result.outcome == "delivered"
    (got,) = s.messages
    assert got.data.startswith(b"ARC-Seal: i=2; cv=fail; a=rsa-sha256; d=fwd.test;")
    assert got.data.endswith(body.replace(b"\n", b"\r\n"))
    cv, _, _ = dkim.arc_verify(got.data, dnsfunc=lookup(harness.dns))
    assert cv in (b"fail", None)  # never pass
    assert count("sealed_cv_fail") == before + 1


async def test_mail_not_checked_at_our_door_is_not_sealed(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    s, port = sink
    publish(harness, "fwd.test")
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    body = b"Delivered-To: bob@fwd.test\nAuthentication-Results: elsewhere.test; arc=pass\n"
    result = await harness.deliver("ann@sink.test", body=body + ORIGINAL)
    assert result.outcome == "delivered"
    (got,) = s.messages
    assert b"ARC-" not in got.data


async def test_a_large_forward_is_read_from_the_store_and_sealed(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    """Bodies over 1 MB are streamed, not kept: the header decides, then the whole is read."""
    s, port = sink
    publish(harness, "fwd.test")
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    big = ORIGINAL + (b"0123456789abcdef" * 4 + b"\n") * 24000 + b"end\n"  # 1.5 MB
    body = forward("spf=pass smtp.mailfrom=joe@orig.test; arc=none", big)
    result = await harness.deliver("ann@sink.test", body=body)
    assert result.outcome == "delivered", result.report
    (got,) = s.messages
    assert got.data.startswith(b"ARC-Seal: i=1; cv=none;")
    assert dkim.arc_verify(got.data, dnsfunc=lookup(harness.dns))[0] == b"pass"
