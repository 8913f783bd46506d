"""smtpd's checks at the door against a real DNS server on loopback (issue 11).

Good mail passes SPF, DKIM and DMARC; bad input (a malformed DKIM-Signature, an SPF record
with too many lookups or a loop, a DNS server that never answers, a 10 MB header block) ends
in a clear result word within the time budget, never an exception.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import dkim
import pytest

from qmesh.dkim.keys import generate, parse_key
from qmesh.dns.resolver import sync_resolver
from services.smtpd.authcheck import DoorChecks
from services.smtpd.authresults import Checked
from tests.dnsserver import DnsFixture, serving, txt

pytestmark = pytest.mark.integration

PEM = generate("rsa")
MESSAGE = (
    b"From: Joe <joe@bank.test>\nTo: alice@example.test\nSubject: statement\n"
    b"Date: Sun, 06 Dec 2026 02:00:00 +0000\nMessage-ID: <s@bank.test>\n\nyour statement\n"
)
SIGNED = dkim.sign(MESSAGE, b"s1", b"bank.test", PEM, include_headers=[b"from", b"subject"])
SIGNED += MESSAGE


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsFixture]:
    spf_chain = {
        (f"l{i}.test", "TXT"): [txt(f"v=spf1 include:l{i + 1}.test -all")] for i in range(12)
    }
    records = {
        ("s1._domainkey.bank.test", "TXT"): [txt(parse_key(PEM).record())],
        ("bank.test", "TXT"): [txt("v=spf1 ip4:192.0.2.10 -all")],
        ("_dmarc.bank.test", "TXT"): [txt("v=DMARC1; p=reject")],
        ("client.bank.test", "TXT"): [txt("v=spf1 ip4:192.0.2.10 -all")],
        ("loop.test", "TXT"): [txt("v=spf1 include:loop.test -all")],
        ("many.test", "TXT"): [txt("v=spf1 include:l0.test -all")],
        ("_dmarc.many.test", "TXT"): [txt("v=DMARC1; p=reject")],
        **spf_chain,
    }
    with serving(records, silent={"slow.test", "_dmarc.slow.test"}) as server:
        yield server


def checks(dns: DnsFixture, budget: float = 5.0) -> DoorChecks:
    return DoorChecks(sync_resolver(dns.server, lifetime=1.0), per_lookup=1.0, budget=budget)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


async def run(
    dns: DnsFixture, message: bytes, *, sender: str, ip: str = "192.0.2.10", budget: float = 5.0
) -> Checked:
    door = checks(dns, budget)
    try:
        return await door.check(
            ip=ip,
            helo="client.bank.test",
            sender=sender,
            message=chunks(message),
            size=len(message),
        )
    finally:
        await door.stop()


def words(c: Checked) -> tuple[str, str, list[str], str]:
    assert c.spf is not None
    return (
        c.spf.result,
        c.spf_helo.result if c.spf_helo else "-",
        [d.result for d in c.dkim],
        c.dmarc.result,
    )


async def test_genuine_mail_passes(dns: DnsFixture) -> None:
    """RFC 7208 (MAIL FROM and HELO), RFC 6376 (dkimpy's signature), RFC 7489 (aligned)."""
    checked = await run(dns, SIGNED, sender="joe@bank.test")
    assert words(checked) == ("pass", "pass", ["pass"], "pass")
    assert checked.dmarc.policy == "reject" and checked.arc == "none"


async def test_forgery_fails_dmarc(dns: DnsFixture) -> None:
    """RFC 7489 section 6.6.2: neither SPF nor DKIM aligned: fail under p=reject."""
    checked = await run(dns, MESSAGE, sender="joe@bank.test", ip="198.51.100.7")
    assert words(checked) == ("fail", "fail", ["none"], "fail")
    assert checked.dmarc.policy == "reject"


async def test_malformed_dkim_signature_is_permerror(dns: DnsFixture) -> None:
    """RFC 6376 section 6.1.1: a signature that does not parse is permerror, not a crash."""
    bad = b"DKIM-Signature: v=1; a=rsa-sha256; d=bank.test; s=s1; b=;;;==\n" + MESSAGE
    checked = await run(dns, bad, sender="joe@bank.test")
    assert [d.result for d in checked.dkim] == ["permerror"]
    assert checked.dmarc.result == "pass"  # SPF still aligns


@pytest.mark.parametrize("domain", ["loop.test", "many.test"])
async def test_spf_loop_and_eleven_lookups_are_permerror(dns: DnsFixture, domain: str) -> None:
    """RFC 7208 section 4.6.4: more than 10 DNS mechanisms (or a loop) is permerror."""
    checked = await run(dns, MESSAGE, sender=f"joe@{domain}")
    assert checked.spf is not None and checked.spf.result == "permerror"


async def test_dns_that_never_answers_is_temperror_within_the_budget(dns: DnsFixture) -> None:
    """RFC 7208 section 2.6.6, RFC 7489 section 6.6.3: DNS trouble is temperror, and the
    budget bounds the time a message waits."""
    message = MESSAGE.replace(b"joe@bank.test", b"joe@slow.test")
    started = time.monotonic()
    checked = await run(dns, message, sender="joe@slow.test", budget=2.0)
    assert time.monotonic() - started < 5.0
    assert checked.spf is not None and checked.spf.result == "temperror"
    assert checked.dmarc.result == "temperror"


async def test_ten_megabyte_header_block_gets_clear_results(dns: DnsFixture) -> None:
    """RFC 6376 / RFC 7489 against a 10 MB header block: permerror, quickly, no exception."""
    huge = b"X-Filler: " + b"a" * 990 + b"\n"
    message = b"From: <joe@bank.test>\n" + huge * 10500 + b"\nbody\n"
    started = time.monotonic()
    checked = await run(dns, message, sender="joe@bank.test")
    assert time.monotonic() - started < 10.0
    assert [d.result for d in checked.dkim] == ["permerror"]
    assert checked.dmarc.result == "permerror"
    assert checked.spf is not None and checked.spf.result == "pass"


async def test_arc_chain_validates(dns: DnsFixture) -> None:
    """RFC 8617 section 5.2: a chain sealed by a forwarder validates (dkimpy's arc_sign)."""
    forwarded = (
        b"Authentication-Results: fwd.bank.test; spf=pass smtp.mailfrom=bank.test\n" + SIGNED
    )
    sealed = dkim.arc_sign(forwarded, b"s1", b"bank.test", PEM, b"fwd.bank.test")
    checked = await run(dns, b"".join(sealed) + forwarded, sender="joe@bank.test")
    assert checked.arc == "pass"
    tampered = (b"".join(sealed) + forwarded).replace(b"your statement", b"pay now")
    assert (await run(dns, tampered, sender="joe@bank.test")).arc == "fail"


async def test_a_client_without_an_ip_address_gets_no_spf(dns: DnsFixture) -> None:
    """RFC 7208 section 4.1: SPF needs the client's IP address; without one, no SPF result
    and no exception (DMARC still looks at DKIM)."""
    checked = await run(dns, SIGNED, sender="joe@bank.test", ip="unknown")
    assert checked.spf is None and checked.spf_helo is None
    assert [d.result for d in checked.dkim] == ["pass"] and checked.dmarc.result == "pass"


async def test_each_signature_is_judged_on_its_own(dns: DnsFixture) -> None:
    """RFC 6376 section 6.1: one message parsed once, each signature judged alone; the key of a
    signature that verified does not lend itself to one whose key is missing."""
    gone = dkim.sign(MESSAGE, b"gone", b"bank.test", PEM, include_headers=[b"from"])
    good = SIGNED[: -len(MESSAGE)]
    for head, expected in (
        (good + gone, ["pass", "permerror"]),
        (gone + good, ["permerror", "pass"]),
    ):
        checked = await run(dns, head + MESSAGE, sender="joe@bank.test")
        assert [d.result for d in checked.dkim] == expected
