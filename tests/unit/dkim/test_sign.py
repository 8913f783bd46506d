"""What qmesh signs and with which key (RFC 6376 5.4, 8.15; RFC 8463; RFC 7489 3.1.1)."""

from __future__ import annotations

import dkim
import pytest

from qmesh.dkim.keyring import Selector
from qmesh.dkim.keys import generate, parse_key
from qmesh.dkim.sign import (
    OVERSIGNED,
    choose_signers,
    field_names,
    from_domain,
    include_headers,
    signatures,
)
from tests import rfc8463

MESSAGE = (
    b"From: Joe <joe@example.test>\n"
    b"To: Ann <ann@elsewhere.test>\n"
    b"Subject: hello\n"
    b"Date: Sun, 06 Dec 2026 02:00:00 +0000\n"
    b"Message-ID: <1@example.test>\n"
    b"Received: from x by y\n"
    b"\n"
    b"Hi.\n"
)
RSA = parse_key(generate("rsa"))
ED = parse_key(generate("ed25519"))


def records(*selectors: Selector) -> dict[bytes, bytes]:
    return {
        f"{s.selector}._domainkey.{s.domain}.".encode(): s.key.record().encode() for s in selectors
    }


def verify_all(message: bytes, published: dict[bytes, bytes]) -> list[bool]:
    results = []
    for i in range(message.count(b"DKIM-Signature:")):
        try:
            ok = dkim.DKIM(message).verify(
                idx=i, dnsfunc=lambda name, timeout=5: published.get(name)
            )
        except dkim.ValidationError:
            ok = False
        results.append(bool(ok))
    return results


def test_rfc8463_example_verifies() -> None:
    """RFC 8463 Appendix A.3: both signatures of the example verify with the A.2 records."""
    published = {f"{n}.".encode(): v.encode() for n, v in rfc8463.RECORDS.items()}
    assert verify_all(rfc8463.SIGNED, published) == [True, True]


def test_rsa_and_ed25519_side_by_side() -> None:
    """RFC 8463 section 5: one signature per algorithm, relaxed/relaxed, both verify."""
    selectors = [Selector("example.test", "r1", RSA), Selector("example.test", "e1", ED)]
    fields = signatures(MESSAGE, selectors)
    assert fields.count(b"DKIM-Signature:") == 2
    assert b"a=rsa-sha256" in fields and b"a=ed25519-sha256" in fields
    assert fields.count(b"c=relaxed/relaxed") == 2
    assert fields.endswith(b"\n") and b"\r" not in fields
    assert verify_all(fields + MESSAGE, records(*selectors)) == [True, True]


def test_rfc8463_key_signs_the_example_message() -> None:
    s = Selector(rfc8463.DOMAIN, "brisbane", parse_key(rfc8463.ED25519_SEED.encode()))
    fields = signatures(rfc8463.UNSIGNED, [s])
    published = {f"{n}.".encode(): v.encode() for n, v in rfc8463.RECORDS.items()}
    assert verify_all(fields + rfc8463.UNSIGNED, published) == [True]


def test_headers_signed_and_oversigned() -> None:
    """RFC 6376 8.15: a From, Subject or To added later breaks the signature."""
    names = include_headers(field_names(MESSAGE))
    assert names.count(b"from") == 2 and names.count(b"subject") == 2
    assert names.count(b"reply-to") == 1  # absent, signed as absent
    assert b"received" not in names  # changes in transit
    assert set(OVERSIGNED) <= {n.decode() for n in names}
    s = Selector("example.test", "r1", RSA)
    signed = signatures(MESSAGE, [s]) + MESSAGE
    assert verify_all(signed, records(s)) == [True]
    for added in (b"Subject: changed\n", b"From: evil@example.test\n", b"Reply-To: x@evil.test\n"):
        tampered = signed.replace(b"From: Joe", added + b"From: Joe", 1)
        assert verify_all(tampered, records(s)) == [False], added
    assert verify_all(signed.replace(b"Hi.", b"Hi!"), records(s)) == [False]
    # a Received field added in transit is allowed
    assert verify_all(b"Received: from a by b\n" + signed, records(s)) == [True]


@pytest.mark.parametrize(
    ("header", "domain"),
    [
        (b"From: Joe <joe@Example.TEST>\n", "example.test"),
        (b"From: joe@example.test, ann@example.test\n", "example.test"),
        (b"From: joe@example.test, ann@other.test\n", None),
        (b"From: a@x.test\nFrom: b@x.test\n", None),
        (b"To: a@x.test\n", None),
        (b"From: no address\n", None),
        (b'From: "x@evil.test" <joe@example.test>\n', "example.test"),
        (b"From: joe@exa mple.test\n", None),
        (b"From: =?utf-8?q?j=C3=B6e?= <joe@example.test>\n", "example.test"),
        (b"From: joe@\xc3\xa9xample.test\n", None),
        (b"Subject: x\n" + b"X-Long: " + b"a" * (2 << 20) + b"\nFrom: j@example.test\n", None),
    ],
)
def test_from_domain(header: bytes, domain: str | None) -> None:
    assert from_domain(header + b"\nbody\n") == domain


def test_the_from_domain_wins_then_the_envelope_domain() -> None:
    keys = {
        "example.test": [Selector("example.test", "r1", RSA)],
        "bounce.test": [Selector("bounce.test", "b1", RSA)],
    }

    def lookup(domain: str) -> list[Selector]:
        return keys.get(domain, [])

    assert choose_signers(MESSAGE, "x@bounce.test", lookup)[0].domain == "example.test"
    other = MESSAGE.replace(b"joe@example.test", b"joe@nokeys.test")
    assert choose_signers(other, "x@bounce.test", lookup)[0].domain == "bounce.test"
    assert choose_signers(other, "", lookup) == []
    assert choose_signers(other, "x@nokeys.test", lookup) == []


def test_hostile_messages_sign_or_say_why() -> None:
    s = [Selector("example.test", "r1", RSA)]
    for message in (
        b"",
        b"no header at all",
        b"From: joe@example.test\n",  # no body
        b"From: joe@example.test\n\n" + b"\x00\xff" * 1000,
        b"From: joe@example.test\n" + b"X: " + b"y" * 100_000 + b"\n\nbody\n",
    ):
        try:
            fields = signatures(message, s)
        except ValueError:
            continue  # SignError: the message goes out unsigned
        assert fields.startswith(b"DKIM-Signature:")
