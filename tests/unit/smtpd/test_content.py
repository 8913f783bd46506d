"""A content filter's answer as a verdict and X-Spam-* lines (defences #12), hostile input too."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.smtpd.content import LATER, REJECTED, judge


@pytest.mark.parametrize(
    ("answer", "smtp", "flag"),
    [
        ({"action": "reject", "score": 20.0, "required_score": 15.0}, REJECTED.smtp(), None),
        ({"action": "soft reject"}, LATER.smtp(), None),
        ({"action": "greylist", "score": 4.1}, LATER.smtp(), None),
        ({"action": "add header", "score": 7.5, "required_score": 15}, None, b"YES"),
        ({"action": "rewrite subject", "score": 9}, None, b"YES"),
        ({"action": "no action", "score": -1.5, "required_score": 15}, None, b"NO"),
        ({}, None, b"NO"),
    ],
)
def test_actions_map_to_verdicts(answer: dict[str, object], smtp: str | None, flag: bytes) -> None:
    scan = judge(answer)
    assert (scan.refusal.smtp() if scan.refusal else None) == smtp
    if flag is not None:
        assert scan.headers.startswith(b"X-Spam-Flag: " + flag + b"\n")
        assert b"X-Spam-Action: " + str(answer.get("action", "unknown")).encode() in scan.headers
    else:
        assert scan.headers == b""
    assert REJECTED.smtp().startswith("554 5.7.1") and LATER.smtp().startswith("451 4.7.1")


def test_scores_are_formatted_to_two_places() -> None:
    scan = judge({"action": "add header", "score": 7.456, "required_score": 15})
    assert b"X-Spam-Score: 7.46 / 15.00\n" in scan.headers


@given(
    st.dictionaries(st.text(), st.none() | st.booleans() | st.floats() | st.text() | st.integers())
)
def test_any_answer_gives_one_clean_header_block(answer: dict[str, object]) -> None:
    scan = judge(answer)
    assert scan.refusal is not None or scan.headers.count(b"\n") == 3
    for line in scan.headers.splitlines():
        assert line.startswith(b"X-Spam-") and line.isascii() and b"\r" not in line
        assert b"nan" not in line and b"inf" not in line
