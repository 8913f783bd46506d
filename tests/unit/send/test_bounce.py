"""BOUNCE-02..BOUNCE-13: who gets a bounce and what it says, in QSBMF and as a DSN.

The complete messages are golden texts in ``bounces/``; the DSN ones are also taken apart
with the standard ``email`` parser (the DSN fields themselves: ``test_dsn.py``).
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from qmesh.contract.envelope import Envelope
from qmesh.contract.events import Origin, Result, Todo
from qmesh.contract.ids import QueueId
from qmesh.routing.classify import RoutingRules
from services.send.bounce import (
    BounceControls,
    BounceTarget,
    bounce_message,
    bounce_target,
    failure_paragraph,
    returned_message,
)
from services.send.plan import apply_result, preprocess, start_pass
from services.send.state import Failure

GOLDEN = Path(__file__).parent / "bounces"
C = BounceControls(
    bouncefrom="MAILER-DAEMON",
    bouncehost="mx.example.test",
    doublebounceto="postmaster",
    doublebouncehost="mx.example.test",
)
QSBMF = dataclasses.replace(C, bounceformat="qsbmf")
ORIGINAL = (
    b"Received: (qmail 1 invoked from network); 5 Nov 2024 07:03:00 -0000\nSubject: hi\n\nbody\n"
)
LOCAL = Failure(
    index=0,
    address="nobody@mx.example.test",
    report="Sorry, no mailbox here by that name. (#5.1.1)\n",
    at=1730790189.0,
)
REMOTE = Failure(
    index=1,
    address="someone@sink.test",
    report=(
        "127.0.0.1 does not like recipient.\n"
        "Remote host said: 550-5.1.1 no\n550 5.1.1 such user\n"
        "Giving up on 127.0.0.1.\n"
    ),
    remote_host="127.0.0.1",
    at=1730790190.0,
)
EXPIRED = Failure(
    index=0,
    address="joe@far.test",
    report=(
        "Connected to 192.0.2.7 but sender was rejected.\n"
        "Remote host said: 451 4.3.0 try later\n"
        "I'm not going to try again; this message has been in the queue too long."
    ),
    remote_host="192.0.2.7",
    at=1731395000.0,
    expired=True,
)
A_BOUNCE = (
    b"Received: (qmail 2 invoked for bounce); 5 Nov 2024 07:03:00 -0000\n"
    b"Date: 5 Nov 2024 07:03:00 -0000\nFrom: MAILER-DAEMON@far.test\nTo: joe@far.test\n"
    b"Subject: failure notice\n\n" + b"x" * 100 + b"\n"
)


def single(c: BounceControls, *failures: Failure, sender: str = "joe@far.test") -> bytes:
    target = bounce_target(sender, c)
    assert target is not None
    return bounce_message(
        target=target,
        original_sender=sender,
        failures=failures or (LOCAL, REMOTE),
        original=ORIGINAL,
        c=c,
        now=1730790200.0,
        birth=1730790180.0,
        message_id="1730790200.Q.0",
    )


def double(c: BounceControls) -> bytes:
    target = bounce_target("", c)
    assert target is not None
    return bounce_message(
        target=target,
        original_sender="",
        failures=[EXPIRED],
        original=A_BOUNCE,
        c=dataclasses.replace(c, bouncemaxbytes=100),
        now=1731395001.0,
        birth=1730790180.0,
        message_id="1731395001.Q.1",
    )


def todo(*recipients: str) -> Todo:
    return Todo(
        id=QueueId("1732510000123.0123456789abcdef"),
        qp=4711,
        envelope=Envelope(sender="joe@far.test", recipients=recipients),
        origin=Origin(kind="network"),
        size=100,
        queued_at=0.0,
    )


def parsed(message: bytes) -> EmailMessage:
    msg = email.message_from_bytes(message, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.defects == [] and all(part.defects == [] for part in msg.walk())
    return msg


def status_groups(part: Message) -> list[Message]:
    """The field groups of a ``message/delivery-status`` part, as the parser splits them."""
    payload = part.get_payload()
    assert isinstance(payload, list)
    groups = [g for g in payload if isinstance(g, Message)]
    assert len(groups) == len(payload)
    return groups


def test_bounce_02_10_12_targets() -> None:
    single_ = bounce_target("joe@far.test", C)
    assert single_ == BounceTarget("", "joe@far.test", double=False)
    double_ = bounce_target("", C)
    assert double_ == BounceTarget("#@[]", "postmaster@mx.example.test", double=True)
    assert bounce_target("#@[]", C) is None  # BOUNCE-12: triple bounces never exist


def test_bounce_02_addr_04_verp_tag_removed() -> None:
    verp = bounce_target("owner-@list.example-@[]", C)
    assert verp == BounceTarget("", "owner-@list.example", double=False)


def test_bounce_11_empty_doublebounceto() -> None:
    target = bounce_target("", dataclasses.replace(C, doublebounceto=""))
    assert target is not None and target.recipient == "@mx.example.test"


def test_bounce_04_05_08_qsbmf_golden() -> None:
    assert single(QSBMF) == (GOLDEN / "qsbmf_single.txt").read_bytes()


def test_bounce_04_20_dsn_golden() -> None:
    assert single(C) == (GOLDEN / "dsn_single.txt").read_bytes()


def test_bounce_09_10_21_golden_double_bounce_header_only() -> None:
    assert double(QSBMF) == (GOLDEN / "qsbmf_double_header_only.txt").read_bytes()
    assert double(C) == (GOLDEN / "dsn_double_header_only.txt").read_bytes()


def test_bounce_04_header_fields_in_order() -> None:
    qsbmf_head = parsed(single(QSBMF)).keys()
    assert qsbmf_head == ["Date", "From", "To", "Subject", "Message-ID", "Auto-Submitted"]
    assert parsed(single(C)).keys() == [*qsbmf_head, "MIME-Version", "Content-Type"]
    msg = parsed(single(C))
    assert (msg["From"], msg["To"], msg["Subject"]) == (
        "MAILER-DAEMON@mx.example.test",
        "joe@far.test",
        "failure notice",
    )
    assert msg["Message-ID"] == "<1730790200.Q.0@mx.example.test>"


def test_bounce_04_addr_07_header_addresses_quoted() -> None:
    c = dataclasses.replace(QSBMF, bouncefrom="mailer daemon")
    text = single(c, LOCAL, sender="joe smith\nx@far.test").decode()
    assert 'From: "mailer daemon"@mx.example.test\n' in text
    assert 'To: "joe smith_x"@far.test\n' in text  # ADDR-01: LF becomes _
    assert 'Return-Path: <"joe smith_x"@far.test>\n' in text


def test_bounce_04_no_control_character_reaches_a_header() -> None:
    """hardening #4: a bare CR in the sender becomes '_' like an LF (ADDR-01)."""
    text = single(QSBMF, LOCAL, sender="joe\rBcc: victim@x.test@far.test").decode()
    assert "\r" not in text
    assert 'To: "joe_Bcc: victim@x.test"@far.test\n' in text


def test_bounce_20_dsn_structure() -> None:
    msg = parsed(single(C))
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    text, status, returned = msg.iter_parts()
    assert [p.get_content_type() for p in (text, status, returned)] == [
        "text/plain",
        "message/delivery-status",
        "message/rfc822",
    ]
    assert text.get_content_charset() == "utf-8"
    # part 1: exactly the QSBMF intro, failure and break paragraphs (BOUNCE-05)
    body = text.get_content()
    assert body.startswith("Hi. This is the qmail-send program at mx.example.test.\n")
    assert body.endswith("\n\n--- Below this line is a copy of the message.\n")
    assert "Return-Path" not in body
    # part 2: one group per message, then one per failed recipient
    groups = status_groups(status)
    assert len(groups) == 3
    assert dict(groups[0].items()) == {
        "Reporting-MTA": "dns; mx.example.test",
        "Arrival-Date": "5 Nov 2024 07:03:00 -0000",
    }
    assert [g["Final-Recipient"] for g in groups[1:]] == [
        "rfc822; nobody@mx.example.test",
        "rfc822; someone@sink.test",
    ]
    assert [g["Action"] for g in groups[1:]] == ["failed", "failed"]
    assert [g["Status"] for g in groups[1:]] == ["5.1.1", "5.1.1"]
    # part 3: the message as queued, without a Return-Path line
    (inner,) = returned.iter_parts()
    assert inner.keys() == ["Received", "Subject"] and inner["Subject"] == "hi"
    assert returned.as_bytes().endswith(b"\n\nbody\n")


def test_bounce_05_20_qsbmf_parsers_find_the_marker() -> None:
    """A QSBMF parser reads the first text part: it begins with ``Hi. This is the``."""
    msg = parsed(single(C))
    first = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    assert isinstance(first, EmailMessage)
    assert first.get_content().startswith("Hi. This is the")


@pytest.mark.parametrize(
    ("report", "paragraph"),
    [
        ("Sorry. (#5.1.1)\n", "<a@x.test>:\nSorry. (#5.1.1)\n"),
        ("no final newline", "<a@x.test>:\nno final newline\n"),
        ("one\n\ntwo\n", "<a@x.test>:\none\n/two\n"),
        ("one\n\n\ntwo\n", "<a@x.test>:\none\n//two\n"),  # qmail-send's loop, from the end
        ("\nleading blank\n", "<a@x.test>:\n/leading blank\n"),
        ("trailing blanks\n\n\n", "<a@x.test>:\ntrailing blanks\n"),
        ("", "<a@x.test>:\n"),
    ],
)
def test_bounce_06_paragraph_never_holds_an_empty_line(report: str, paragraph: str) -> None:
    got = failure_paragraph(Failure(index=0, address="a@x.test", report=report, at=0.0))
    assert got == paragraph
    assert "\n\n" not in got and got.endswith("\n") and not got.startswith("-")


def test_bounce_07_lf_in_address_becomes_underscore() -> None:
    failure = Failure(index=0, address="a\nb@x.test", report="Sorry.", at=0.0)
    assert failure_paragraph(failure) == "<a_b@x.test>:\nSorry.\n"
    failure = Failure(index=0, address="a\rb\x7f@x.test", report="Sorry.", at=0.0)
    assert failure_paragraph(failure) == "<a_b_@x.test>:\nSorry.\n"  # hardening #4


def test_bounce_07_address_shown_is_before_virtualdomains() -> None:
    rules = RoutingRules.build(
        envnoathost="mx.example.test",
        percenthack=[],
        locals=["mx.example.test"],
        virtualdomains=[("virt.example.test", "carol")],
    )
    state, jobs = start_pass(
        preprocess(todo("info@virt.example.test"), rules, set(), 0.0), "local", 0.0, 604800
    )
    assert jobs[0].recipient == "carol-info@mx.example.test"
    failed = apply_result(state, Result.for_job(jobs[0], "failed", "Sorry. (#5.1.1)"), 1.0)
    assert failed is not None
    for c in (C, QSBMF):
        text = single(c, *failed.bounces).decode()
        assert "<info@virt.example.test>:\nSorry. (#5.1.1)\n" in text
        assert "carol-info" not in text
    assert (
        "Final-Recipient: rfc822; info@virt.example.test\n" in single(C, *failed.bounces).decode()
    )


def test_bounce_13_a_deferral_is_never_reported() -> None:
    """No "still trying" notices: a deferral leaves nothing in the bounce record."""
    rules = RoutingRules.build(
        envnoathost="mx.example.test", percenthack=[], locals=["mx.example.test"], virtualdomains=[]
    )
    state, jobs = start_pass(
        preprocess(todo("b@far.test"), rules, set(), 0.0), "remote", 0.0, 604800
    )
    report = "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
    after = apply_result(state, Result.for_job(jobs[0], "deferred", report), 1.0)
    assert after is not None and after.idle and not after.complete
    assert after.bounces == ()


def test_bounce_09_returned_message() -> None:
    assert returned_message(ORIGINAL, 0) == (ORIGINAL, True)
    assert returned_message(ORIGINAL, len(ORIGINAL)) == (ORIGINAL, True)
    header = b"Received: (qmail 1 invoked from network); 5 Nov 2024 07:03:00 -0000\nSubject: hi\n"
    assert returned_message(ORIGINAL, len(ORIGINAL) - 1) == (header, False)
    assert returned_message(b"no blank line\nat all\n", 5) == (b"no blank line\nat all\n", False)
    assert returned_message(b"\nbody only\n", 5) == (b"", False)


def test_bounce_09_20_header_only_is_text_rfc822_headers() -> None:
    msg = parsed(double(C))
    text, _, returned = msg.iter_parts()
    assert returned.get_content_type() == "text/rfc822-headers"
    assert returned.get_content().endswith("Subject: failure notice\n")
    assert b"x" * 100 not in double(C)
    assert text.get_content().endswith(
        "--- Below this line is the header of the original bounce (too big to return whole).\n"
    )


def test_bounce_10_double_bounce() -> None:
    text = double(QSBMF).decode()
    assert "To: postmaster@mx.example.test\n" in text
    assert (
        "\n\nHi. This is the qmail-send program at mx.example.test.\n"
        "I tried to deliver a bounce message to this address, but the bounce bounced!\n\n"
    ) in text
    assert "\nReturn-Path: <>\nReceived: (qmail 2 invoked for bounce)" in text
    whole = bounce_message(
        target=BounceTarget("#@[]", "postmaster@mx.example.test", double=True),
        original_sender="",
        failures=[LOCAL],
        original=A_BOUNCE,
        c=QSBMF,
        now=0.0,
        birth=0.0,
        message_id="1",
    )
    assert b"\n--- Below this line is the original bounce.\n\nReturn-Path: <>\n" in whole


def test_bounce_20_eight_bit_parts_are_marked() -> None:
    original = "Received: x\nSubject: grüße\n\nbody\n".encode()
    target = bounce_target("joe@far.test", C)
    assert target is not None
    message = bounce_message(
        target=target,
        original_sender="joe@far.test",
        failures=[LOCAL],
        original=original,
        c=C,
        now=0.0,
        birth=0.0,
        message_id="1",
    )
    msg = parsed(message)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    text, status, returned = msg.iter_parts()
    assert text["Content-Transfer-Encoding"] is None and status["Content-Transfer-Encoding"] is None
    assert returned["Content-Transfer-Encoding"] == "8bit"
    assert message.endswith(original + b"\n--1/mx.example.test--\n")


def test_bounce_20_smtputf8_uses_the_global_types() -> None:
    failure = Failure(index=0, address="jörg@mx.example.test", report="Sorry. (#5.1.1)", at=0.0)
    target = bounce_target("zoë@far.test", C)
    assert target is not None
    message = bounce_message(
        target=target,
        original_sender="zoë@far.test",
        failures=[failure],
        original=b"Received: x\nSubject: hi\n\nbody\n",
        c=C,
        now=0.0,
        birth=0.0,
        message_id="1",
        smtputf8=True,
    )
    assert "To: zoë@far.test\n".encode() in message  # ADDR-07 [MODERN]: no quotes
    msg = parsed(message)
    types = [p.get_content_type() for p in msg.iter_parts()]
    assert types == ["text/plain", "message/global-delivery-status", "message/global"]
    assert "Final-Recipient: utf-8; jörg@mx.example.test\n".encode() in message
