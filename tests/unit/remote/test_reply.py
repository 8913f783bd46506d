"""Reply parsing, EHLO extensions, per-recipient results (REMOTE-31, REMOTE-32, REMOTE-41,
REMOTE-44)."""

from __future__ import annotations

import pytest

from services.remote.client import (
    Attempt,
    Reply,
    continues,
    extensions,
    parse_reply,
    reply_code,
    size_limit,
)


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"250 ok", 250),
        (b"250-first", 250),
        (b"550", 550),
        (b"421 closing", 421),
        (b"354 go ahead", 354),
        (b"hello", 400),  # no numeric code: a temporary failure
        (b"25", 400),
        (b"", 400),
        (b"600 odd", 600),  # an unexpected class goes by the thresholds (>= 500 permanent)
    ],
)
def test_remote_31_the_code_is_the_first_three_characters(line: bytes, code: int) -> None:
    assert reply_code(line) == code


@pytest.mark.parametrize(
    ("line", "more"),
    [(b"250-more", True), (b"250 last", False), (b"250", False), (b"250-", True), (b"25-x", False)],
)
def test_remote_31_a_dash_in_the_fourth_place_continues(line: bytes, more: bool) -> None:
    assert continues(line) is more


def test_remote_31_the_code_is_taken_from_the_first_line() -> None:
    reply = parse_reply([b"451-first", b"250 last"])
    assert reply == Reply(451, (b"451-first", b"250 last"))


def test_remote_41_ehlo_keywords_upper_cased_with_their_parameters() -> None:
    ehlo = parse_reply(
        [
            b"250-mx.example hello",
            b"250-size 1000",
            b"250-8BITMIME",
            b"250-STARTTLS",
            b"250-AUTH PLAIN LOGIN",
            b"250 SMTPUTF8",
        ]
    )
    assert extensions(ehlo) == {
        "SIZE": "1000",
        "8BITMIME": "",
        "STARTTLS": "",
        "AUTH": "PLAIN LOGIN",
        "SMTPUTF8": "",
    }
    assert extensions(parse_reply([b"250 mx.example"])) == {}


@pytest.mark.parametrize(("params", "limit"), [("1000", 1000), ("", 0), ("0", 0), ("x", 0)])
def test_remote_44_size_parameter(params: str, limit: int) -> None:
    assert size_limit(params) == limit


def test_remote_32_40_results_per_recipient() -> None:
    """A refusal at RCPT decides its recipient's outcome and comes before the message's text;
    an accepted recipient (or one not reached) takes the message's outcome and text."""
    attempt = Attempt(
        "delivered",
        "accepted.\n",
        refused=(None, ("failed", "refused.\n"), ("deferred", "later.\n")),
    )
    assert attempt.results(4) == [
        ("delivered", "accepted.\n"),
        ("failed", "refused.\naccepted.\n"),
        ("deferred", "later.\naccepted.\n"),
        ("delivered", "accepted.\n"),
    ]
    assert Attempt("deferred", "died.\n").results(2) == [("deferred", "died.\n")] * 2
