"""The checks at the door as header lines and a decision (issue 11): pure, no DNS."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmesh.auth.dkim import DkimResult
from qmesh.auth.dmarc import DmarcResult
from qmesh.auth.spf import SpfResult
from services.smtpd.authresults import (
    DECIDE,
    QUARANTINE,
    Checked,
    ResultsFilter,
    decide,
    header_lines,
    our_claim,
)

ID = "mx.example.test"
PASS = Checked(
    SpfResult("pass", "", "mailfrom", "sender.test"),
    SpfResult("none", "", "helo", "client.sender.test"),
    [DkimResult("pass", "sender.test", "s1", "rsa-sha256", "abcdefgh")],
    DmarcResult("pass", "sender.test", "reject", "aligned DKIM"),
    "none",
)


def failing(policy: str, dkim: str = "fail") -> Checked:
    return Checked(
        SpfResult("fail", "", "mailfrom", "forger.test"),
        None,
        [DkimResult(dkim, "forger.test", "s1")],
        DmarcResult("fail", "bank.test", policy),
        "none",
    )


def strip(message: bytes, pieces: int = 1) -> bytes:
    f = ResultsFilter(ID)
    size = max(1, len(message) // pieces)
    out = b"".join(f.feed(message[i : i + size]) for i in range(0, len(message), size))
    return out + f.end()


def test_header_names_every_check_under_our_id() -> None:
    """RFC 8601 section 2.2: one field, our authserv-id, one result per method and signature;
    RFC 7208 sections 2.3 and 2.4 (HELO and MAIL FROM), RFC 7489, RFC 8617."""
    lines = header_lines(
        PASS, ID, sender="joe@sender.test", helo="client.sender.test", dmarcreject=True
    )
    assert lines == (
        b"Authentication-Results: mx.example.test;\n"
        b"\tspf=pass smtp.mailfrom=joe@sender.test;\n"
        b"\tspf=none smtp.helo=client.sender.test;\n"
        b"\tdkim=pass header.d=sender.test header.s=s1 header.b=abcdefgh;\n"
        b"\tdmarc=pass (p=reject) header.from=sender.test;\n"
        b"\tarc=none\n"
    )


def test_hostile_envelope_values_cannot_add_lines() -> None:
    """RFC 8601 section 2.2: values are quoted; no control character reaches the header."""
    lines = header_lines(
        PASS, ID, sender='a"b\r\nX-Evil: 1@x.test', helo="h e;l\no", dmarcreject=False
    )
    assert b"\nX-Evil" not in lines and b"\r" not in lines
    assert all(line.startswith((b"Authentication-Results:", b"\t")) for line in lines.splitlines())


def test_long_results_are_folded_below_the_line_limit() -> None:
    """RFC 5322 section 2.1.1: ten DKIM reasons do not make a line over 998 characters."""
    many = Checked(None, None, [DkimResult("permerror", reason="x" * 200)] * 10, PASS.dmarc, "none")
    lines = header_lines(many, ID, sender="", helo="h.test", dmarcreject=False)
    assert max(len(line) for line in lines.splitlines()) < 998


@pytest.mark.parametrize(
    ("checked", "dmarcreject", "code", "quarantine"),
    [
        (failing("reject"), True, 550, False),
        (failing("reject"), False, None, False),  # off: only recorded
        (failing("quarantine"), True, None, True),
        (failing("quarantine"), False, None, False),
        (failing("none"), True, None, False),
        (failing("reject", dkim="temperror"), True, None, False),  # DNS trouble never refuses
        (failing("reject", dkim="policy"), True, None, False),  # too large to judge
        (
            replace(failing("reject"), dmarc=DmarcResult("fail", "bank.test", "reject", pct=50)),
            True,
            None,
            True,
        ),
        (
            replace(
                failing("quarantine"), dmarc=DmarcResult("fail", "bank.test", "quarantine", pct=0)
            ),
            True,
            None,
            False,
        ),
        (PASS, True, None, False),
    ],
)
def test_dmarcreject_decides_only_certain_failures(
    checked: Checked, dmarcreject: bool, code: int | None, quarantine: bool
) -> None:
    """RFC 7489 section 6.7: p=reject refused with 550 5.7.1, p=quarantine marked; off records;
    section 6.6.4: with pct below 100 the next lower policy."""
    verdict = decide(checked, dmarcreject=dmarcreject)
    assert (verdict.code if verdict else None) == code
    if verdict is not None:
        assert verdict.enhanced == "5.7.1" and "bank.test" in verdict.text
        assert "DMARC" in verdict.text
    lines = header_lines(checked, ID, sender="a@forger.test", helo="h", dmarcreject=dmarcreject)
    assert (QUARANTINE in lines) is quarantine
    assert b"dmarc=fail" in lines or b"dmarc=pass" in lines


def test_temperror_never_refuses() -> None:
    """RFC 7489 section 6.6.3: a DNS failure is temperror, never a 5xx."""
    checked = Checked(None, None, [], DmarcResult("temperror", "bank.test", None), "none")
    assert decide(checked, dmarcreject=True) is None


FORGED = (
    b"Received: from a\n"
    b"Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\n"
    b"Authentication-Results: other.test; spf=pass\n"
    b"authentication-results :\n (comment) MX.Example.Test;\n\tdmarc=pass\n"
    b'Authentication-Results: "mx.example.test"; spf=pass\n'
    b"X-Qmesh-Quarantine: none\n"
    b"Subject: Authentication-Results: mx.example.test; dkim=pass\n"
    b"\n"
    b"Authentication-Results: mx.example.test; dkim=pass (in the body: kept)\n"
)
KEPT = (
    b"Received: from a\n"
    b"Authentication-Results: other.test; spf=pass\n"
    b"Subject: Authentication-Results: mx.example.test; dkim=pass\n"
    b"\n"
    b"Authentication-Results: mx.example.test; dkim=pass (in the body: kept)\n"
)


@pytest.mark.parametrize("pieces", [1, 3, 7, len(FORGED)])
def test_fields_claiming_our_id_are_removed(pieces: int) -> None:
    """RFC 8601 section 5: incoming fields with our authserv-id are removed (folded, commented,
    quoted, any case), others' and the body's are kept, however the bytes arrive."""
    assert strip(FORGED, pieces) == KEPT


def test_a_huge_field_is_judged_on_its_start_and_streamed() -> None:
    """RFC 8601 section 5 against a 10 MB field: at most DECIDE bytes are held."""
    ours = b"Authentication-Results: mx.example.test; dkim=pass " + b"x" * (10 << 20) + b"\n"
    theirs = b"X-Long: " + b"y" * (10 << 20) + b"\n"
    f = ResultsFilter(ID)
    out = bytearray()
    for i in range(0, len(ours + theirs), 65536):
        out += f.feed((ours + theirs)[i : i + 65536])
        assert len(f._held) <= DECIDE + 65536
    out += f.end()
    assert bytes(out) == theirs


def test_header_without_end_and_lines_without_colon_are_kept() -> None:
    message = b"no colon here\nSubject: x"
    assert strip(message) == message
    assert strip(b"") == b""
    assert our_claim(b"Authentication-Results", ID) is False
    assert our_claim(b"Authentication-Results: (((", ID) is False


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_any_bytes_only_lose_whole_fields(data: bytes, size: int) -> None:
    """Hostile input: never an exception; what is kept is the input less whole header fields."""
    out = strip(data, max(1, len(data) // size))
    assert len(out) <= len(data)
    if b"authentication-results" not in data.lower() and b"x-qmesh" not in data.lower():
        assert out == data
