"""remote signs outgoing mail with DKIM; what the next hop receives verifies (issue 11).

A real nats-server, the queue store, an aiosmtpd sink reached through smtproutes, and OpenDKIM
verifying the sink's copy with keys served by the loopback DNS server (RFC 6376, RFC 8463).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmesh.dkim.keyring import KeyringError
from qmesh.dkim.keys import generate, parse_key
from tests.dnsserver import serving, txt
from tests.integration import test_remote
from tests.integration.remote_peers import Sink
from tests.integration.test_remote import Harness
from tests.opendkim import verify

pytestmark = pytest.mark.integration

# remote's harness and sink, shared with test_remote.py
harness = test_remote.harness
sink = test_remote.sink
close_peer_connections = test_remote.close_peer_connections

BODY = (
    b"Received: (qmail 1 invoked by inject); 6 Dec 2026 02:00:00 -0000\n"
    b"From: Joe <joe@example.test>\n"
    b"To: Bob <bob@sink.test>\n"
    b"Subject: signed\n"
    b"Date: Sun, 06 Dec 2026 02:00:00 +0000\n"
    b"Message-ID: <dkim-1@example.test>\n"
    b"\n"
    b".leading dot\nbare CR\rline\r\nlast line without LF"
)


def keys(control: Path, domain: str, files: dict[str, bytes]) -> dict[str, str]:
    """Write key files; the TXT records to publish, by selector."""
    directory = control / "domainkeys" / domain
    directory.mkdir(parents=True, exist_ok=True)
    records = {}
    for name, data in files.items():
        (directory / name).write_bytes(data)
        if name != "selector":
            records[name] = parse_key(data).record()
    return records


async def test_a_message_sent_through_remote_carries_valid_signatures(
    harness: Harness, sink: tuple[Sink, int], tmp_path: Path
) -> None:
    """RFC 6376 and RFC 8463: RSA and Ed25519 side by side, verified by OpenDKIM on what the
    sink received (CR LF, dots unstuffed, the bare CR made a line break: REMOTE-35/36)."""
    s, port = sink
    records = keys(
        harness.control,
        "example.test",
        {"r1": generate("rsa"), "e1": generate("ed25519"), "selector": b"r1\ne1\n"},
    )
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test", sender="bounces@lists.test", body=BODY)
    assert result.outcome == "delivered"
    (got,) = s.messages
    assert got.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert got.data.count(b"DKIM-Signature:") == 2
    assert b"d=example.test" in got.data
    published = {(f"{sel}._domainkey.example.test", "TXT"): [txt(r)] for sel, r in records.items()}
    with serving(published) as dns:
        verdicts = verify(got.data, dns.port, tmp_path / "verify")
    assert {(v.result, v.selector, v.algorithm) for v in verdicts} == {
        ("pass", "r1", "rsa-sha256"),
        ("pass", "e1", "ed25519-sha256"),
    }


async def test_envelope_domain_signs_when_the_from_domain_has_no_key(
    harness: Harness, sink: tuple[Sink, int], tmp_path: Path
) -> None:
    s, port = sink
    records = keys(harness.control, "bounce.test", {"default": generate("ed25519")})
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test", sender="x@bounce.test", body=BODY)
    assert result.outcome == "delivered"
    (got,) = s.messages
    assert b"d=bounce.test" in got.data and b"s=default" in got.data
    with serving({("default._domainkey.bounce.test", "TXT"): [txt(records["default"])]}) as dns:
        assert [v.result for v in verify(got.data, dns.port, tmp_path / "v")] == ["pass"]


async def test_no_key_no_signature_and_the_exact_bytes(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    s, port = sink
    keys(harness.control, "other.test", {"default": generate("rsa")})
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test", sender="joe@example.test", body=BODY)
    assert result.outcome == "delivered"
    (got,) = s.messages
    assert b"DKIM-Signature" not in got.data
    assert got.data.startswith(b"Received: (qmail 1")


async def test_a_malformed_key_stops_remote_at_startup(harness: Harness) -> None:
    keys(harness.control, "example.test", {})
    (harness.control / "domainkeys" / "example.test" / "default").write_text("not a key\n")
    with pytest.raises(KeyringError, match=r"example\.test/default"):
        await harness.start()


async def test_a_selector_file_naming_a_missing_key_stops_remote(harness: Harness) -> None:
    keys(harness.control, "example.test", {"r1": generate("rsa"), "selector": b"r2\n"})
    with pytest.raises(KeyringError, match="names 'r2'"):
        await harness.start()
