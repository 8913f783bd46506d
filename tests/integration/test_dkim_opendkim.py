"""qmesh's DKIM signatures verify with OpenDKIM, a verifier qmesh does not use (issue 11).

OpenDKIM fetches the public keys from the loopback DNS server (tests/dnsserver.py) over real
sockets, as a receiving system would (RFC 6376 section 6; RFC 8463 for Ed25519).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmesh.dkim.keyring import Selector
from qmesh.dkim.keys import generate, parse_key
from qmesh.dkim.sign import signatures
from tests import rfc8463
from tests.dnsserver import serving, txt
from tests.opendkim import Verdict, verify

pytestmark = pytest.mark.integration

MESSAGE = (
    b"From: Joe <joe@example.test>\n"
    b"To: Ann <ann@elsewhere.test>\n"
    b"Subject: dinner\n"
    b"Date: Sun, 06 Dec 2026 02:00:00 +0000\n"
    b"Message-ID: <1@example.test>\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"\n"
    b"Hi.  \n\n.leading dot\ntrailing spaces   \n\n\n"
)


def publish(*selectors: Selector) -> dict[tuple[str, str], list[str]]:
    return {
        (f"{s.selector}._domainkey.{s.domain}", "TXT"): [txt(s.key.record())] for s in selectors
    }


def test_rsa_and_ed25519_signatures_verify_with_opendkim(tmp_path: Path) -> None:
    rsa = Selector("example.test", "rsa202612", parse_key(generate("rsa")))
    ed = Selector("example.test", "ed202612", parse_key(generate("ed25519")))
    signed = signatures(MESSAGE, [rsa, ed]) + MESSAGE
    with serving(publish(rsa, ed)) as dns:
        verdicts = verify(signed, dns.port, tmp_path)
        assert ("rsa202612._domainkey.example.test", "TXT", "udp") in dns.queries
    assert sorted(verdicts, key=lambda v: v.selector) == [
        Verdict("pass", "example.test", "ed25519-sha256", "ed202612"),
        Verdict("pass", "example.test", "rsa-sha256", "rsa202612"),
    ]


def test_a_changed_message_fails_with_opendkim(tmp_path: Path) -> None:
    rsa = Selector("example.test", "s1", parse_key(generate("rsa")))
    signed = signatures(MESSAGE, [rsa]) + MESSAGE
    with serving(publish(rsa)) as dns:
        changed = verify(signed.replace(b"Subject: dinner", b"Subject: lunch"), dns.port, tmp_path)
        added = verify(
            signed.replace(b"From: Joe", b"Reply-To: x@evil.test\nFrom: Joe"), dns.port, tmp_path
        )
    assert [v.result for v in changed] == ["fail"]
    assert [v.result for v in added] == ["fail"]


def test_a_missing_selector_record_does_not_pass(tmp_path: Path) -> None:
    """The key of the selector is not published: no pass (permerror/no key, RFC 6376 6.1.2)."""
    rsa = Selector("example.test", "gone", parse_key(generate("rsa")))
    signed = signatures(MESSAGE, [rsa]) + MESSAGE
    with serving({("example.test", "MX"): ["10 mx.example.test."]}) as dns:
        verdicts = verify(signed, dns.port, tmp_path)
    assert [v.result for v in verdicts] != ["pass"]


def test_rfc8463_example_verifies_with_opendkim(tmp_path: Path) -> None:
    """RFC 8463 Appendix A.3: both signatures of the example, keys of A.2 from DNS."""
    records = {(name, "TXT"): [txt(value)] for name, value in rfc8463.RECORDS.items()}
    with serving(records) as dns:
        verdicts = verify(rfc8463.SIGNED, dns.port, tmp_path)
    assert {(v.result, v.algorithm, v.selector) for v in verdicts} == {
        ("pass", "ed25519-sha256", "brisbane"),
        ("pass", "rsa-sha256", "test"),
    }


def test_rfc8463_key_signed_by_qmesh_verifies_with_opendkim(tmp_path: Path) -> None:
    s = Selector(rfc8463.DOMAIN, "brisbane", parse_key(rfc8463.ED25519_SEED.encode()))
    signed = signatures(rfc8463.UNSIGNED, [s]) + rfc8463.UNSIGNED
    records = {(name, "TXT"): [txt(value)] for name, value in rfc8463.RECORDS.items()}
    with serving(records) as dns:
        verdicts = verify(signed, dns.port, tmp_path)
    assert [(v.result, v.selector) for v in verdicts] == [("pass", "brisbane")]
