"""Bounce messages (BOUNCE-01..BOUNCE-12) in qmail's QSBMF format.

Who gets the notice: the sender (BOUNCE-02), ``doublebounceto@doublebouncehost`` when the
failed message was itself a bounce (BOUNCE-10), nobody when it was a double bounce
(BOUNCE-12, triple bounces never exist).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qmesh.contract.dates import qmail_date
from qmesh.contract.envelope import DOUBLE_BOUNCE_SENDER
from services.send.state import Failure

_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+$")


@dataclass(frozen=True, slots=True)
class BounceControls:
    bouncefrom: str
    bouncehost: str
    doublebounceto: str
    doublebouncehost: str


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


def quote_address(address: str) -> str:
    """ADDR-07: quote the local part when it is not a plain dot-atom."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    plain = (
        local
        and _ATOM.match(local)
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
    )
    if not plain:
        escaped = re.sub(r'(["\\\r\n])', r"\\\1", local)
        local = f'"{escaped}"'
    return f"{local}@{domain}" if at else local


def _paragraph(failure: Failure) -> str:
    """BOUNCE-06: a failure paragraph never holds an empty line; it ends with one LF."""
    text = failure.report.rstrip("\n")
    while "\n\n" in text:
        text = text.replace("\n\n", "\n/")
    address = failure.address.replace("\n", "_")
    return f"<{address}>:\n{text}\n"


def qsbmf(
    *,
    target: BounceTarget,
    original_sender: str,
    failures: Sequence[Failure],
    original: bytes,
    c: BounceControls,
    now: float,
    message_id: str,
) -> bytes:
    """The whole bounce message in stored form (BOUNCE-04, -05, -10)."""
    head = (
        f"Date: {qmail_date(now)}\n"
        f"From: {quote_address(c.bouncefrom + '@' + c.bouncehost)}\n"
        f"To: {quote_address(target.recipient)}\n"
        f"Subject: failure notice\n"
        f"Message-ID: <{message_id}@{c.bouncehost}>\n"
        f"Auto-Submitted: auto-replied\n\n"
    )
    if target.double:
        intro = (
            f"Hi. This is the qmail-send program at {c.bouncehost}.\n"
            "I tried to deliver a bounce message to this address, but the bounce bounced!\n"
        )
        brk = "--- Below this line is the original bounce.\n"
        return_path = "Return-Path: <>\n"
    else:
        intro = (
            f"Hi. This is the qmail-send program at {c.bouncehost}.\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\n"
        )
        brk = "--- Below this line is a copy of the message.\n"
        return_path = f"Return-Path: <{quote_address(original_sender.replace(chr(10), '_'))}>\n"
    body = intro + "\n" + "\n".join(_paragraph(f) for f in failures) + "\n" + brk + "\n"
    return (head + body + return_path).encode("utf-8", "surrogateescape") + original
