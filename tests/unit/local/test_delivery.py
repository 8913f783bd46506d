"""What a local delivery writes (LOCAL-11, LOCAL-18..LOCAL-26, ADDR-07)."""

from __future__ import annotations

import calendar

import pytest

from qmesh.contract.errors import Permanent
from qmesh.contract.events import Origin
from services.local.delivery import (
    MBOX_UNSUPPORTED,
    NO_HOST,
    PROGRAMS_DISABLED,
    Plan,
    delivered_to,
    forward_content,
    from_line,
    header_lines,
    is_looping,
    maildir_content,
    plan,
    program_env,
    repeatable,
    return_path,
    split_recipient,
)
from services.local.dotqmail import Broken, Forward, Maildir, Program
from services.local.resolve import RuleChoice, Target

WHEN = calendar.timegm((2024, 11, 25, 5, 0, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("sender", "line"),
    [
        ("", "Return-Path: <>\n"),
        ("bob@example.test", "Return-Path: <bob@example.test>\n"),
        ("#@[]", "Return-Path: <#@[]>\n"),
        ("bob smith@example.test", 'Return-Path: <"bob smith"@example.test>\n'),
        (".bob@example.test", 'Return-Path: <".bob"@example.test>\n'),
        ("bob.@example.test", 'Return-Path: <"bob."@example.test>\n'),
        ("b..ob@example.test", 'Return-Path: <"b..ob"@example.test>\n'),
        ('b"o\\b@example.test', 'Return-Path: <"b\\"o\\\\b"@example.test>\n'),
        ("@example.test", 'Return-Path: <""@example.test>\n'),
        ("jörg@example.test", "Return-Path: <jörg@example.test>\n"),  # hardening #12, RFC 6531
        ("j\udcf6rg@example.test", 'Return-Path: <"j\udcf6rg"@example.test>\n'),  # not UTF-8
        ("a\nb@example.test", 'Return-Path: <"a\\_b"@example.test>\n'),  # LF → _
        ("a\rb@example.test", 'Return-Path: <"a\\_b"@example.test>\n'),  # hardening #4
        ("a\x0bb\x7f@example.test", 'Return-Path: <"a_b_"@example.test>\n'),
        ("x!#$%&'*+-/=?^_`{|}~y@ex", "Return-Path: <x!#$%&'*+-/=?^_`{|}~y@ex>\n"),
        ("bob@exa mple", "Return-Path: <bob@exa mple>\n"),  # the domain is never quoted
        ("nobody", "Return-Path: <nobody>\n"),
    ],
)
def test_return_path_quotes_the_local_part(sender: str, line: str) -> None:
    """LOCAL-21, ADDR-07: quoted iff not a plain dot-atom; LFs become '_'."""
    assert return_path(sender) == line


@pytest.mark.parametrize(
    ("recipient", "line"),
    [
        ("carol-info@mx.example.test", "Delivered-To: carol-info@mx.example.test\n"),
        ("Bob Smith@x.test", "Delivered-To: Bob Smith@x.test\n"),  # no quoting
        ("a\nb@x.test", "Delivered-To: a_b@x.test\n"),
        ("a\rX-Injected: 1@x.test", "Delivered-To: a_X-Injected: 1@x.test\n"),  # hardening #4
        ("a\tb\x1b\x85@x.test", "Delivered-To: a_b__@x.test\n"),
    ],
)
def test_delivered_to(recipient: str, line: str) -> None:
    """LOCAL-20: the job's local part as it is, LFs (and every control character) as '_'."""
    assert delivered_to(recipient) == line


def test_from_line() -> None:
    """LOCAL-25's UFLINE: blanks in the sender become '-', <> is MAILER-DAEMON."""
    assert from_line("a b\tc@x.test", WHEN) == "From a-b-c@x.test Mon Nov 25 05:00:00 2024\n"
    assert from_line("", WHEN) == "From MAILER-DAEMON Mon Nov 25 05:00:00 2024\n"
    assert from_line("a\rb@x.test", WHEN) == "From a_b@x.test Mon Nov 25 05:00:00 2024\n"


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [("bob@x.test", ("bob", "x.test")), ("@x.test", ("", "x.test")), ("a@b@c", ("a@b", "c"))],
)
def test_split_recipient(recipient: str, expected: tuple[str, str]) -> None:
    """SEND-15: local part before the last ``@``, domain after it."""
    assert split_recipient(recipient) == expected


def test_recipient_without_host_is_permanent() -> None:
    """LOCAL-01: D 5.1.3."""
    with pytest.raises(Permanent) as err:
        split_recipient("bob")
    assert err.value.text == NO_HOST


DT = "Delivered-To: bob@x.test\n"


@pytest.mark.parametrize(
    ("message", "looping"),
    [
        (b"Received: x\nDelivered-To: bob@x.test\nSubject: s\n\nbody\n", True),
        (b"Delivered-To: bob@x.test\n\n", True),
        (b"Delivered-To: bob@x.test", False),  # no LF: not the same line
        (b"Subject: s\n\nDelivered-To: bob@x.test\n", False),  # in the body
        (b"Delivered-To: BOB@x.test\n\n", False),  # byte-identical only
        (b"Delivered-To: bob@x.test.other\n\n", False),
        (b"X-Delivered-To: bob@x.test\n", False),
        (b"", False),
        (b"Subject: no body and no empty line\nDelivered-To: bob@x.test\n", True),
    ],
)
def test_loop_detection_scans_the_header_only(message: bytes, looping: bool) -> None:
    """LOCAL-11: a header line byte-identical to this delivery's Delivered-To line."""
    assert is_looping(message, DT) is looping


def test_contents() -> None:
    """LOCAL-24 (mailbox) and LOCAL-23 (forward) contents."""
    lines = header_lines("bob@x.test", "a@y.test", WHEN)
    assert maildir_content(lines, b"Subject: s\n\nhi\n") == (
        b"Return-Path: <a@y.test>\nDelivered-To: bob@x.test\nSubject: s\n\nhi\n"
    )
    assert forward_content(lines, b"Subject: s\n\nhi\n") == (
        b"Delivered-To: bob@x.test\nSubject: s\n\nhi\n"
    )


def test_program_environment() -> None:
    """LOCAL-19: exactly these variables (HOME is added by the runner)."""
    t = Target("bob", {}, "-", "list-Foo-bar-baz")
    choice = RuleChoice("list-default", "|x", "Foo-bar-baz")
    lines = header_lines("bob-list-Foo-bar-baz@mail.example.co.uk", "a@y.test", WHEN)
    env = program_env(
        sender="a@y.test",
        newsender="a@y.test",
        recipient="bob-list-Foo-bar-baz@mail.example.co.uk",
        t=t,
        choice=choice,
        lines=lines,
    )
    assert env == {
        "SENDER": "a@y.test",
        "NEWSENDER": "a@y.test",
        "RECIPIENT": "bob-list-Foo-bar-baz@mail.example.co.uk",
        "USER": "bob",
        "HOST": "mail.example.co.uk",
        "LOCAL": "bob-list-Foo-bar-baz",
        "EXT": "list-Foo-bar-baz",
        "EXT2": "Foo-bar-baz",
        "EXT3": "bar-baz",
        "EXT4": "baz",
        "HOST2": "mail.example.co",
        "HOST3": "mail.example",
        "HOST4": "mail",
        "DEFAULT": "Foo-bar-baz",
        "DTLINE": "Delivered-To: bob-list-Foo-bar-baz@mail.example.co.uk\n",
        "RPLINE": "Return-Path: <a@y.test>\n",
        "UFLINE": "From a@y.test Mon Nov 25 05:00:00 2024\n",
    }


def test_program_environment_for_domain_rules_and_short_names() -> None:
    t = Target(None, {}, "-", "sales")
    lines = header_lines("sales@localhost", "", WHEN)
    env = program_env(
        sender="",
        newsender="",
        recipient="sales@localhost",
        t=t,
        choice=RuleChoice("sales", "|x", None),
        lines=lines,
    )
    assert env["USER"] == "alias"
    assert (env["EXT"], env["EXT2"], env["EXT3"], env["EXT4"]) == ("sales", "", "", "")
    assert (env["HOST2"], env["HOST3"], env["HOST4"]) == ("localhost",) * 3
    assert "DEFAULT" not in env


def make_plan(text: str, *, account: str | None = "bob", programs: bool = True) -> Plan:
    return plan(
        sender="a@y.test",
        recipient="bob@mx.test",
        namespace="mx.test",
        t=Target(account, {}, "", ""),
        choice=RuleChoice("", text, None),
        programdelivery=programs,
        when=WHEN,
    )


def test_plan_keeps_line_order_and_names_the_forward_origin() -> None:
    """LOCAL-17, QUEUE-03: forwards of an account's rules come 'by account bob@mx.test'."""
    p = make_plan("./Maildir/\n&c@d.test\n|true\n")
    assert p.steps == (
        Maildir(0, "./Maildir/", "INBOX"),
        Forward(1, "c@d.test"),
        Program(2, "true"),
    )
    assert p.origin == Origin(kind="account", account="bob@mx.test")
    assert p.newsender == "a@y.test"


def test_plan_of_domain_rules_forwards_by_alias() -> None:
    assert make_plan("&c@d.test", account=None).origin == Origin(kind="alias")


def test_program_lines_fail_when_programdelivery_is_off() -> None:
    """LOCAL-18: Z Program delivery is disabled, in the program line's place."""
    p = make_plan("./Maildir/\n|true\n", programs=False)
    assert p.steps[1] == Broken(1, PROGRAMS_DISABLED)


def test_mbox_lines_are_declined() -> None:
    """LOCAL-25 allows declining mbox lines with Z."""
    assert make_plan("./Mailbox\n").steps == (Broken(0, MBOX_UNSUPPORTED),)


@pytest.mark.parametrize(
    ("text", "programs", "expected"),
    [
        ("./Maildir/\n", True, True),
        ("./Maildir/\n./Maildir/.Lists/\n", True, True),
        ("", True, True),  # the default delivery of an empty rule is decided elsewhere
        ("|true\n", False, True),  # a disabled program line only defers
        ("/var/mail/bob\n", True, True),  # mbox lines only defer
        ("./Maildir/\n&c@d.test\n", True, False),
        ("|true\n", True, False),
        ("./Maildir/\n|true\n", True, False),
    ],
)
def test_only_plans_of_mailbox_lines_are_repeatable(
    text: str, programs: bool, expected: bool
) -> None:
    """Hardening #10, ARCH-11: a plan that forwards or runs a program is claimed first."""
    assert repeatable(make_plan(text, programs=programs)) is expected
