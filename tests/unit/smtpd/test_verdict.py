"""One decision, three formats: SMTP text, QMTP response, metrics outcome (defences #12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.smtpd.verdict import Verdict


@pytest.mark.parametrize(
    ("verdict", "smtp", "qmtp", "outcome"),
    [
        (Verdict(250, "2.0.0", "ok 1 qp 2"), "250 2.0.0 ok 1 qp 2", b"Kok 1 qp 2", "accepted"),
        (
            Verdict(451, "4.7.0", "too many messages"),
            "451 4.7.0 too many messages",
            b"Ztoo many messages (#4.7.0)",
            "deferred",
        ),
        (
            Verdict.qq(554, "too many hops, this message is looping (#5.4.6)"),
            "554 5.4.6 too many hops, this message is looping (#5.4.6)",
            b"Dtoo many hops, this message is looping (#5.4.6)",
            "rejected",
        ),
        (Verdict.of("354 go ahead"), "354 go ahead", b"Kgo ahead", "accepted"),
        (Verdict.qq(451, "no code"), "451 4.3.0 no code", b"Zno code (#4.3.0)", "deferred"),
    ],
)
def test_one_verdict_formatted_once_per_protocol(
    verdict: Verdict, smtp: str, qmtp: bytes, outcome: str
) -> None:
    assert verdict.smtp() == smtp
    assert verdict.qmtp() == qmtp
    assert verdict.outcome == outcome
    assert Verdict.of(smtp) == verdict


@pytest.mark.parametrize("bad", ["", "ok", "99 x", "600 6.0.0 x", "451 5.7.1 mismatched", "25O x"])
def test_reply_constants_that_do_not_parse_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Verdict.of(bad)


@given(st.text())
def test_hostile_reply_text_never_parses_into_a_wrong_kind(text: str) -> None:
    try:
        verdict = Verdict.of(text)
    except ValueError:
        return
    assert text.startswith(str(verdict.code))
    kinds = {"2": "accept", "3": "accept", "4": "temporary", "5": "permanent"}
    assert verdict.kind == kinds[text[0]]
