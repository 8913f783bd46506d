"""Bounce messages (BOUNCE-02..BOUNCE-12, BOUNCE-20): who gets the notice and what it says.

Who: the sender (BOUNCE-02), ``doublebounceto@doublebouncehost`` when the failed message was
itself a bounce (BOUNCE-10), nobody when it was a double bounce (BOUNCE-12, triple bounces
never exist). What: qmail's QSBMF text (BOUNCE-04..09); with ``bounceformat`` ``dsn`` (the
default) that text is the first part of an RFC 3464 report built by :mod:`services.send.dsn`.
No delay notices exist (BOUNCE-13): only permanent failures reach this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qmesh.contract.dates import qmail_date
from qmesh.contract.envelope import DOUBLE_BOUNCE_SENDER, printable, quote_address
from qmesh.control.values import BounceFormat
from services.send import dsn
from services.send.state import Failure


@dataclass(frozen=True, slots=True)
class BounceControls:
    bouncefrom: str
    bouncehost: str
    doublebounceto: str
    doublebouncehost: str
    bounceformat: BounceFormat = "dsn"
    bouncemaxbytes: int = 0  # 0: return the whole message (BOUNCE-09)


@dataclass(frozen=True, slots=True)
class BounceTarget:
    sender: str  # envelope sender of the bounce
    recipient: str
    double: bool


def bounce_target(original_sender: str, c: BounceControls) -> BounceTarget | None:
    """``None`` for a triple bounce (BOUNCE-12)."""
    if original_sender == DOUBLE_BOUNCE_SENDER:
        return None
    if original_sender == "":
        return BounceTarget(DOUBLE_BOUNCE_SENDER, f"{c.doublebounceto}@{c.doublebouncehost}", True)
    return BounceTarget("", original_sender.removesuffix("-@[]"), False)


def header_address(address: str, *, smtputf8: bool = False) -> str:
    """An address as a header line shows it: each LF or other control character becomes ``_``
    (ADDR-01, hardening #4), quoted per ADDR-07."""
    return quote_address(printable(address), smtputf8=smtputf8)


def failure_paragraph(failure: Failure) -> str:
    """BOUNCE-06, -07, -08: ``<address>:`` and the report, without an empty line, ending in LF.

    As qmail-send does it: every LF that follows an LF becomes ``/``.
    """
    description = failure.report.rstrip("\n")
    text = f"<{printable(failure.address)}>:\n"
    if description:
        text += description + "\n"
    chars = list(text)
    for i in range(len(chars) - 2, 0, -1):
        if chars[i] == "\n" and chars[i - 1] == "\n":
            chars[i] = "/"
    return "".join(chars)


def returned_message(original: bytes, maxbytes: int) -> tuple[bytes, bool]:
    """BOUNCE-09: the stored message, or only its header when ``bouncemaxbytes`` is exceeded.

    Returns the bytes and whether they are the whole message.
    """
    if maxbytes <= 0 or len(original) <= maxbytes:
        return original, True
    if original.startswith(b"\n"):
        return b"", False
    end = original.find(b"\n\n")
    return (original if end < 0 else original[: end + 1]), False


def notice(target: BounceTarget, failures: Sequence[Failure], bouncehost: str, whole: bool) -> str:
    """The intro, failure and break paragraphs (BOUNCE-05, BOUNCE-10), blank-line separated."""
    if target.double:
        intro = (
            f"Hi. This is the qmail-send program at {bouncehost}.\n"
            "I tried to deliver a bounce message to this address, but the bounce bounced!\n"
        )
        brk = "--- Below this line is the original bounce.\n"
        what = "the original bounce"
    else:
        intro = (
            f"Hi. This is the qmail-send program at {bouncehost}.\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\n"
        )
        brk = "--- Below this line is a copy of the message.\n"
        what = "the message"
    if not whole:
        brk = f"--- Below this line is the header of {what} (too big to return whole).\n"
    return "\n".join([intro, *(failure_paragraph(f) for f in failures), brk])


def bounce_message(
    *,
    target: BounceTarget,
    original_sender: str,
    failures: Sequence[Failure],
    original: bytes,
    c: BounceControls,
    now: float,
    birth: float,
    message_id: str,
    smtputf8: bool = False,
) -> bytes:
    """The whole bounce in stored form: QSBMF (BOUNCE-04..10) or a DSN (BOUNCE-20)."""
    returned, whole = returned_message(original, c.bouncemaxbytes)
    text = notice(target, failures, c.bouncehost, whole)
    head = (
        f"Date: {qmail_date(now)}\n"
        f"From: {header_address(c.bouncefrom + '@' + c.bouncehost)}\n"
        f"To: {header_address(target.recipient, smtputf8=smtputf8)}\n"
        "Subject: failure notice\n"
        f"Message-ID: <{message_id}@{c.bouncehost}>\n"
        "Auto-Submitted: auto-replied\n"
    )
    if c.bounceformat == "qsbmf":
        return_path = f"Return-Path: <{header_address(original_sender, smtputf8=smtputf8)}>\n"
        return (head + "\n" + text + "\n" + return_path).encode(
            "utf-8", "surrogateescape"
        ) + returned
    report = dsn.Report(
        reporting_mta=c.bouncehost,
        arrival=birth,
        recipients=tuple(dsn.recipient_status(f) for f in failures),
    )
    return head.encode("utf-8", "surrogateescape") + dsn.multipart_report(
        text=text,
        report=report,
        returned=returned,
        whole=whole,
        smtputf8=smtputf8,
        boundary_seed=f"{message_id}/{c.bouncehost}",
    )
