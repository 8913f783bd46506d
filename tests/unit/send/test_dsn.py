"""BOUNCE-20, BOUNCE-21: the fields of the ``message/delivery-status`` part."""

from __future__ import annotations

import email
import email.policy

import pytest

from services.send.dsn import (
    RecipientStatus,
    Report,
    delivery_status,
    multipart_report,
    recipient_status,
    remote_reply,
    status_code,
)
from services.send.state import Failure

SAID = "Remote host said: "


def failure(report: str, *, remote_host: str | None = None, expired: bool = False) -> Failure:
    return Failure(
        index=0,
        address="a@x.test",
        report=report,
        remote_host=remote_host,
        at=1730790189.0,
        expired=expired,
    )


@pytest.mark.parametrize(
    ("report", "status"),
    [
        ("Sorry, no mailbox here by that name. (#5.1.1)\n", "5.1.1"),
        ("Domain does not accept mail (null MX). (#5.1.10)\n", "5.1.10"),
        ("first (#5.1.2)\nthen (#5.7.1)\n", "5.7.1"),  # the last one
        # a qmail server's own (#x.y.z) in its reply counts: it is in the description
        (f"1.2.3.4 does not like recipient.\n{SAID}553 sorry, not here (#5.7.1)\n", "5.7.1"),
        (f"1.2.3.4 does not like recipient.\n{SAID}550 5.1.1 no such user\n", "5.1.1"),
        (f"x\n{SAID}550-5.2.2 mailbox\n550 5.2.2 full\nGiving up on 1.2.3.4.\n", "5.2.2"),
        (f"x\n{SAID}554 5.7.1\n", "5.7.1"),  # the code alone
        (f"x\n{SAID}550 no such user\n", "5.0.0"),  # no enhanced code
        (f"x\n{SAID}550 no 5.1.1 here\n", "5.0.0"),  # not at the start of the text
        (f"x\n{SAID}550 5.1.1.2 odd\n", "5.0.0"),  # not an enhanced code
        ("Sorry, no mailbox. (#4.2.2)\n", "5.2.2"),  # Action: failed always has class 5
        ("Sorry, something went wrong.\n", "5.0.0"),
        ("", "5.0.0"),
    ],
)
def test_bounce_21_status_from_enhanced_code(report: str, status: str) -> None:
    assert status_code(failure(report)) == status


def test_bounce_21_lifetime_failure_is_5_4_7_and_keeps_the_last_reply() -> None:
    expired = failure(
        "Connected to 192.0.2.7 but greeting failed.\n"
        f"{SAID}421 4.3.2 busy (#4.3.2)\n"
        "I'm not going to try again; this message has been in the queue too long.",
        remote_host="192.0.2.7",
        expired=True,
    )
    got = recipient_status(expired)
    assert (got.status, got.diagnostic) == ("5.4.7", ("421 4.3.2 busy (#4.3.2)",))
    no_reply = failure("Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n")
    assert status_code(no_reply.model_copy(update={"expired": True})) == "5.4.7"


@pytest.mark.parametrize(
    ("report", "reply"),
    [
        ("Sorry. (#5.1.1)\n", ()),
        (f"1.2.3.4 does not like recipient.\n{SAID}550 5.1.1 no\n", ("550 5.1.1 no",)),
        (
            f"x\n{SAID}550-5.1.1 one\n550-two\n550 three\nGiving up on 1.2.3.4.\n",
            ("550-5.1.1 one", "550-two", "550 three"),
        ),
        # REMOTE-32: the RCPT reply, then the DATA reply; the last one is the diagnosis
        (f"a\n{SAID}250 ok\nb\n{SAID}554 5.6.0 spam\n", ("554 5.6.0 spam",)),
        (f"x\n{SAID}550-cut short\n", ("550-cut short",)),
        (f"x\n{SAID}", ()),
        (f"QMTP\n{SAID}no such user\n", ("no such user",)),
    ],
)
def test_bounce_20_diagnostic_is_the_last_remote_reply(report: str, reply: tuple[str, ...]) -> None:
    assert remote_reply(report) == reply


def test_bounce_20_remote_fields_only_for_remote_failures() -> None:
    local = recipient_status(failure("Sorry. (#5.1.1)\n"))
    assert (local.remote_mta, local.diagnostic) == (None, ())
    # a local report that happens to quote a server is no remote diagnosis
    assert recipient_status(failure(f"program said\n{SAID}550 x\n")).diagnostic == ()
    v4 = recipient_status(failure(f"x\n{SAID}550 5.1.1 no\n", remote_host="192.0.2.7"))
    assert (v4.remote_mta, v4.diagnostic) == ("[192.0.2.7]", ("550 5.1.1 no",))
    v6 = recipient_status(failure("x\n", remote_host="2001:db8::25"))
    assert (v6.remote_mta, v6.diagnostic) == ("[IPv6:2001:db8::25]", ())
    assert recipient_status(failure("x\n", remote_host="mx.far.test")).remote_mta == "mx.far.test"


def test_bounce_20_delivery_status_golden() -> None:
    report = Report(
        reporting_mta="mx.example.test",
        arrival=1730790180.0,
        recipients=(
            RecipientStatus("nobody@mx.example.test", "5.1.1", 1730790189.0),
            RecipientStatus(
                "john smith@far.test",
                "5.7.1",
                1730790190.0,
                remote_mta="[192.0.2.7]",
                diagnostic=("550-5.7.1 first", "550 5.7.1 second"),
            ),
        ),
    )
    assert delivery_status(report) == (
        "Reporting-MTA: dns; mx.example.test\n"
        "Arrival-Date: 5 Nov 2024 07:03:00 -0000\n"
        "\n"
        "Final-Recipient: rfc822; nobody@mx.example.test\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Last-Attempt-Date: 5 Nov 2024 07:03:09 -0000\n"
        "\n"
        'Final-Recipient: rfc822; "john smith"@far.test\n'
        "Action: failed\n"
        "Status: 5.7.1\n"
        "Last-Attempt-Date: 5 Nov 2024 07:03:10 -0000\n"
        "Remote-MTA: dns; [192.0.2.7]\n"
        "Diagnostic-Code: smtp; 550-5.7.1 first\n"
        " 550 5.7.1 second\n"
    )


@pytest.mark.parametrize(
    ("address", "utf8", "field"),
    [
        ("a\nb@x.test", False, "rfc822; a_b@x.test"),  # ADDR-01
        ("a\rb@x.test", False, "rfc822; a_b@x.test"),  # hardening #4
        ("jörg@x.test", True, "utf-8; jörg@x.test"),  # RFC 6533 in a global report
        ("jörg@x.test", False, 'utf-8; "j\\x{F6}rg"@x.test'),  # RFC 6533 utf-8-addr-xtext
        ("j\udcf6rg@x.test", False, 'utf-8; "j\\x{FFFD}rg"@x.test'),  # a byte that is not UTF-8
    ],
)
def test_bounce_20_final_recipient_field(address: str, utf8: bool, field: str) -> None:
    report = Report("mx.example.test", 0.0, (RecipientStatus(address, "5.1.1", 0.0),))
    assert f"\nFinal-Recipient: {field}\n" in delivery_status(report, utf8=utf8)


def test_bounce_20_diagnostic_is_ascii_unless_global() -> None:
    r = RecipientStatus("a@x.test", "5.0.0", 0.0, "[192.0.2.7]", ("550 nö",))
    assert "Diagnostic-Code: smtp; 550 n?\n" in delivery_status(Report("h", 0.0, (r,)))
    assert "Diagnostic-Code: smtp; 550 nö\n" in delivery_status(Report("h", 0.0, (r,)), utf8=True)


def test_bounce_20_boundary_never_occurs_in_a_part() -> None:
    returned = b"Subject: trap\n\n--7/h\n--7/h.1\n"
    message = multipart_report(
        text="Hi. This is the qmail-send program at h.\n",
        report=Report("h", 0.0, (RecipientStatus("a@x.test", "5.1.1", 0.0),)),
        returned=returned,
        whole=True,
        smtputf8=False,
        boundary_seed="7/h",
    )
    assert b'boundary="7/h.2"' in message
    msg = email.message_from_bytes(b"Subject: x\n" + message, policy=email.policy.default)
    parts = list(msg.iter_parts())
    assert len(parts) == 3 and parts[2].get_content_type() == "message/rfc822"
    assert message.endswith(returned + b"\n--7/h.2--\n")


def test_bounce_20_boundary_seed_is_made_safe() -> None:
    message = multipart_report(
        text="Hi.\n",
        report=Report("h", 0.0, ()),
        returned=b"",
        whole=True,
        smtputf8=False,
        boundary_seed='1.a b"ü/' + "x" * 80,
    )
    boundary = message.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    assert boundary == b"1.a_b__/" + b"x" * 52
