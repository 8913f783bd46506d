"""BOUNCE-02..BOUNCE-12: who gets a bounce and what it says (QSBMF)."""

from __future__ import annotations

from services.send.bounce import BounceControls, bounce_target, qsbmf, quote_address
from services.send.state import Failure

C = BounceControls(
    bouncefrom="MAILER-DAEMON",
    bouncehost="mx.example.test",
    doublebounceto="postmaster",
    doublebouncehost="mx.example.test",
)


def test_bounce_02_10_12_targets() -> None:
    single = bounce_target("joe@far.test", C)
    assert single is not None and (single.sender, single.recipient) == ("", "joe@far.test")
    verp = bounce_target("owner-@list.example-@[]", C)
    assert verp is not None and verp.recipient == "owner-@list.example"
    double = bounce_target("", C)
    assert double is not None and (double.sender, double.recipient, double.double) == (
        "#@[]",
        "postmaster@mx.example.test",
        True,
    )
    assert bounce_target("#@[]", C) is None  # BOUNCE-12: triple bounces never exist


def test_bounce_05_06_qsbmf_body() -> None:
    target = bounce_target("joe@far.test", C)
    assert target is not None
    text = qsbmf(
        target=target,
        original_sender="joe@far.test",
        failures=[
            Failure(
                index=0,
                address="nobody@mx.example.test",
                report="Sorry, no mailbox here by that name. (#5.1.1)\n\nx",
                at=0.0,
            )
        ],
        original=b"Subject: hi\n\nbody\n",
        c=C,
        now=0.0,
        message_id="1.2",
    ).decode()
    head, _, body = text.partition("\n\n")
    assert "From: MAILER-DAEMON@mx.example.test" in head and "To: joe@far.test" in head
    assert "Subject: failure notice" in head
    assert body.startswith("Hi. This is the qmail-send program at mx.example.test.\n")
    assert (
        "<nobody@mx.example.test>:\nSorry, no mailbox here by that name. (#5.1.1)\n/x\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "Return-Path: <joe@far.test>\nSubject: hi\n\nbody\n"
    ) in body


def test_addr_07_quoting() -> None:
    assert quote_address("joe@x.test") == "joe@x.test"
    assert quote_address("john smith@x.test") == '"john smith"@x.test'
    assert quote_address('a"b@x.test') == '"a\\"b"@x.test'
    assert quote_address(".joe@x.test") == '".joe"@x.test'
