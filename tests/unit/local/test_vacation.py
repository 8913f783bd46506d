"""Vacation replies: who is answered and what the answer says (RFC 3834, vacation(1))."""

from __future__ import annotations

import pytest

from qmesh.directory.admin import vacation_reply
from qmesh.directory.errors import InvalidName
from services.local.vacation import compose, header_fields, should_reply

ME = "alice@example.test"
MESSAGE = b"From: Bob <bob@remote.test>\nSubject: hello\nMessage-ID: <1@remote.test>\n\nhi\n"


def fields(*lines: str) -> dict[str, list[str]]:
    return header_fields(("\n".join(lines) + "\n\nbody\nList-Id: not a header\n").encode())


@pytest.mark.parametrize(
    ("sender", "header", "reply"),
    [
        ("bob@remote.test", (), True),
        ("bob@remote.test", ("Auto-Submitted: no",), True),
        ("bob@remote.test", ("Precedence: first-class",), True),
        ("", (), False),  # a bounce
        ("#@[]", (), False),  # qmail's double bounce
        ("alice@example.test", (), False),  # the account itself
        ("ALICE@Example.test", (), False),
        ("MAILER-DAEMON@remote.test", (), False),
        ("postmaster@remote.test", (), False),
        ("news-request@remote.test", (), False),
        ("owner-news@remote.test", (), False),
        ("talk-return-12-@lists.test", (), True),  # VERP senders: caught by List-Id below
        ("bob@remote.test", ("Auto-Submitted: auto-replied",), False),
        ("bob@remote.test", ("Auto-Submitted: auto-generated; x=y",), False),
        ("bob@remote.test", ("Precedence: bulk",), False),
        ("bob@remote.test", ("precedence:  LIST ",), False),
        ("bob@remote.test", ("List-Id: <talk.lists.test>",), False),
        ("bob@remote.test", ("List-Unsubscribe:", " <mailto:x@y.test>"), False),
        ("bob@remote.test", ("X-Auto-Response-Suppress: OOF, AutoReply",), False),
        ("bob@remote.test\r\nBcc: x@evil.test", (), False),
        ("<bob@remote.test>", (), False),
        ("bob", (), False),
    ],
)
def test_who_is_answered(sender: str, header: tuple[str, ...], reply: bool) -> None:
    assert should_reply(sender, ME, fields(*header)) is reply


def test_the_header_ends_at_the_first_empty_line_and_folds_join() -> None:
    got = fields("Subject: one", "\ttwo", "X-A: 1", "x-a: 2")
    assert got["subject"] == ["one two"] and got["x-a"] == ["1", "2"]
    assert "list-id" not in got  # in the body


def test_the_reply_is_marked_and_threaded() -> None:
    vacation = vacation_reply("Away until Monday", "I am away.\r\nBack soon.", 3)
    body = compose(ME, "bob@remote.test", vacation, header_fields(MESSAGE), 0.0).decode()
    head, _, text = body.partition("\n\n")
    lines = head.split("\n")
    assert "From: <alice@example.test>" in lines and "To: <bob@remote.test>" in lines
    assert "Subject: Away until Monday" in lines
    assert "Auto-Submitted: auto-replied (vacation)" in lines
    assert "In-Reply-To: <1@remote.test>" in lines and "References: <1@remote.test>" in lines
    assert "Date: Thu, 01 Jan 1970 00:00:00 +0000" in lines
    assert text == "I am away.\nBack soon.\n"
    assert "\r" not in body


def test_a_non_ascii_subject_is_encoded_and_a_hostile_message_id_left_out() -> None:
    vacation = vacation_reply("En congés", "Absent.")
    hostile = b"Message-ID: <a@b>\r\nBcc: x@evil.test\nMessage-ID: <x y@z>\n\n"
    body = compose(ME, "bob@remote.test", vacation, header_fields(hostile), 0.0).decode()
    assert "Subject: =?utf-8?b?RW4gY29uZ8Opcw==?=" in body
    assert "In-Reply-To" not in body or "In-Reply-To: <a@b>" in body
    assert "evil" not in body and "<x y@z>" not in body


@pytest.mark.parametrize(
    ("subject", "text", "days"),
    [
        ("Away\r\nBcc: x@evil.test", "text", 7),
        ("Away\nBcc: x@evil.test", "text", 7),
        ("", "text", 7),
        ("Away", "", 7),
        ("Away", "x" * 9000, 7),
        ("Away", "nul\0", 7),
        ("Away", "text", 0),
        ("Away", "text", 8),
        ("x" * 201, "text", 7),
    ],
)
def test_hostile_replies_are_refused(subject: str, text: str, days: int) -> None:
    with pytest.raises(InvalidName, match="invalid vacation"):
        vacation_reply(subject, text, days)
