"""Checking incoming mail as a library: DKIM, DMARC and Authentication-Results (issue 11).

DNS answers come from the loopback DNS server; the DKIM signatures are qmesh's own (remote's
signer) and RFC 8463's example. Hostile input ends in a result word, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qmesh.auth.dkim import DkimResult, verify_dkim
from qmesh.auth.dmarc import check_dmarc, organizational_domain
from qmesh.auth.lookup import txt_lookup
from qmesh.auth.results import authentication_results, claims_our_id
from qmesh.auth.spf import SpfResult, check_spf, resolver_lookup
from qmesh.dkim.keyring import Selector
from qmesh.dkim.keys import generate, parse_key
from qmesh.dkim.sign import signatures
from qmesh.dns.resolver import sync_resolver
from tests import rfc8463
from tests.dnsserver import DnsFixture, serving, txt

pytestmark = pytest.mark.integration

KEY = Selector("example.test", "s1", parse_key(generate("rsa")))
ED = Selector("example.test", "e1", parse_key(generate("ed25519")))
MESSAGE = (
    b"From: Joe <joe@example.test>\nTo: bob@elsewhere.test\nSubject: hi\n"
    b"Date: Sun, 06 Dec 2026 02:00:00 +0000\nMessage-ID: <a@example.test>\n\nhello\n"
)
SIGNED = signatures(MESSAGE, [KEY, ED]) + MESSAGE


@pytest.fixture
def dns() -> Iterator[DnsFixture]:
    records = {
        ("s1._domainkey.example.test", "TXT"): [txt(KEY.key.record())],
        ("e1._domainkey.example.test", "TXT"): [txt(ED.key.record())],
        ("example.test", "TXT"): [txt("v=spf1 ip4:192.0.2.10 -all")],
        ("_dmarc.example.test", "TXT"): [txt("v=DMARC1; p=reject; sp=quarantine")],
        ("revoked._domainkey.example.test", "TXT"): [txt("v=DKIM1; k=rsa; p=")],
        ("forger.test", "TXT"): [txt("v=spf1 +all")],
        **{(n, "TXT"): [txt(v)] for n, v in rfc8463.RECORDS.items()},
    }
    with serving(records, silent={"slow._domainkey.example.test"}) as server:
        yield server


def lookups(dns: DnsFixture):
    resolver = sync_resolver(dns.server, lifetime=1.0)
    return txt_lookup(resolver), resolver_lookup(resolver)


def test_qmesh_signatures_pass(dns: DnsFixture) -> None:
    """RFC 6376, RFC 8463: both of remote's signatures verify."""
    txts, _ = lookups(dns)
    results = verify_dkim(SIGNED, txts)
    assert [(r.result, r.selector, r.algorithm) for r in results] == [
        ("pass", "s1", "rsa-sha256"),
        ("pass", "e1", "ed25519-sha256"),
    ]


def test_rfc8463_example_passes(dns: DnsFixture) -> None:
    txts, _ = lookups(dns)
    assert [r.result for r in verify_dkim(rfc8463.SIGNED, txts)] == ["pass", "pass"]


@pytest.mark.parametrize(
    ("change", "result"),
    [
        (lambda m: m.replace(b"hello", b"HELLO"), "fail"),  # body changed
        (lambda m: m.replace(b"Subject: hi", b"Subject: ho"), "fail"),  # signed header changed
        (lambda m: m.replace(b"s=s1;", b"s=gone;").replace(b"s=e1;", b"s=gone;"), "permerror"),
        (
            lambda m: m.replace(b"s=s1;", b"s=revoked;").replace(b"s=e1;", b"s=revoked;"),
            "permerror",
        ),
        (lambda m: m.replace(b"s=s1;", b"s=slow;").replace(b"s=e1;", b"s=slow;"), "temperror"),
    ],
)
def test_failures_have_their_result(dns: DnsFixture, change, result: str) -> None:
    txts, _ = lookups(dns)
    assert {r.result for r in verify_dkim(change(SIGNED), txts)} == {result}


@pytest.mark.parametrize(
    "message",
    [
        b"DKIM-Signature: v=1; a=rsa-sha256; d=; s=; b=; bh=\nFrom: a@example.test\n\nx\n",
        b"DKIM-Signature: garbage without tags\nFrom: a@example.test\n\nx\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=s1; h=from; bh=!!; b=!!\n"
        b"From: a@example.test\n\nx\n",
        b"DKIM-Signature: v=1; a=rsa-sha999; d=example.test; s=s1; h=from; bh=AA==; b=AA==\n"
        b"From: a@example.test\n\nx\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=s1; h=from; bh=AA==; b=AA==;"
        b" i=@evil.test\nFrom: a@example.test\n\nx\n",
        b"DKIM-Signature: \xff\xfe\x00\nFrom: a@example.test\n\nx\n",
        b"X-Big: " + b"a" * (10 << 20) + b"\n\nbody\n",  # a 10 MB header block
        b"DKIM-Signature: v=1\n" + b"X: y\n" * 200_000 + b"\nbody\n",
        b"",
    ],
)
def test_hostile_signatures_give_a_result(dns: DnsFixture, message: bytes) -> None:
    txts, _ = lookups(dns)
    results = verify_dkim(message, txts)
    assert results and all(r.result in ("permerror", "fail", "none") for r in results), results


def test_at_most_ten_signatures_are_looked_up(dns: DnsFixture) -> None:
    txts, _ = lookups(dns)
    many = signatures(MESSAGE, [KEY]) * 30 + MESSAGE
    results = verify_dkim(many, txts)
    assert len(results) == 10 and {r.result for r in results} == {"pass"}


def test_dmarc_pass_and_forgery(dns: DnsFixture) -> None:
    """RFC 7489: an aligned DKIM pass passes; a forged From of a p=reject domain fails with
    the policy reject; a subdomain without a record takes sp=."""
    txts, spfs = lookups(dns)
    good = check_dmarc("example.test", None, verify_dkim(SIGNED, txts), txts)
    assert (good.result, good.policy) == ("pass", "reject")
    spf = check_spf("203.0.113.9", "liar@forger.test", "forger.test", spfs)
    assert spf.result == "pass"  # SPF passes for the forger's own domain: not aligned
    forged = check_dmarc("example.test", spf, verify_dkim(MESSAGE, txts), txts)
    assert (forged.result, forged.policy) == ("fail", "reject")
    sub = check_dmarc("news.example.test", spf, [], txts)
    assert (sub.result, sub.policy) == ("fail", "quarantine")
    aligned_spf = check_spf("192.0.2.10", "bounce@example.test", "mx.example.test", spfs)
    assert check_dmarc("example.test", aligned_spf, [], txts).result == "pass"
    assert check_dmarc("nodmarc.test", None, [], txts).result == "none"


def test_dmarc_dns_failure_is_temperror(dns: DnsFixture) -> None:
    dns.servfail.add("_dmarc.broken.test")
    txts, _ = lookups(dns)
    assert check_dmarc("broken.test", None, [], txts).result == "temperror"


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.test", "example.test"),
        ("a.b.example.test", "example.test"),
        ("mail.example.co.uk", "example.co.uk"),
        ("x.github.io", "x.github.io"),
        ("Example.COM.", "example.com"),
    ],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


def test_authentication_results_field() -> None:
    field = authentication_results(
        "mx.qmesh.test",
        spf=SpfResult("pass", "", "mailfrom", "example.test"),
        mail_from="joe@example.test",
        dkim=[DkimResult("pass", "example.test", "s1", "rsa-sha256", "abcdefgh")],
        dmarc=check_dmarc_result(),
    )
    assert field == (
        "Authentication-Results: mx.qmesh.test; spf=pass smtp.mailfrom=joe@example.test; "
        "dkim=pass header.d=example.test header.s=s1 header.b=abcdefgh; "
        "dmarc=pass (p=reject) header.from=example.test"
    )
    assert authentication_results("mx.qmesh.test") == "Authentication-Results: mx.qmesh.test; none"


def check_dmarc_result():
    from qmesh.auth.dmarc import DmarcResult

    return DmarcResult("pass", "example.test", "reject")


@pytest.mark.parametrize(
    ("value", "ours"),
    [
        ("mx.qmesh.test; dkim=pass header.d=example.test", True),
        ("MX.QMESH.TEST; spf=pass", True),
        ("other.test; dkim=pass", False),
        ("mx.qmesh.test", True),
        ("mx.qmesh.test; (((broken", True),
        ("", False),
    ],
)
def test_forged_fields_claiming_our_id_are_recognised(value: str, ours: bool) -> None:
    assert claims_our_id(value, "mx.qmesh.test") is ours
