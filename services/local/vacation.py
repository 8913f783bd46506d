"""Vacation replies: whether to answer a message, and the answer (RFC 3834, vacation(1)).

qmailadmin's autoresponder and vacation(1) ran as a program from the account's ``.qmail``;
here the account record holds the reply (:class:`~qmesh.directory.records.Vacation`) and local
sends it after the account's own address (no extension) has its message. Pure functions: the
consumer reads the header once, asks :func:`should_reply`, and queues :func:`compose` with
the null sender (RFC 3834 section 3.3), so a bounce of the reply bounces nowhere. Robots are
never answered: bounces, lists, bulk mail and other automatic replies (sections 2 and 3.1.7),
and the ``-request``, ``owner-`` and daemon names vacation(1) skips. ARCH-25: no MIME or
header library here; the header is read as lines up to the first empty one, as LOCAL-11 does.
"""

from __future__ import annotations

import base64
import re
import secrets
import time

from qmesh.contract.envelope import DOUBLE_BOUNCE_SENDER
from qmesh.directory.records import Vacation

MAX_HEADER = 64 * 1024
ROBOTS = frozenset(
    {"mailer-daemon", "postmaster", "listserv", "majordomo", "nobody", "noreply", "no-reply"}
)
ROBOT_SUFFIXES = ("-request", "-owner", "-bounces", "-bounce", "-errors")
LIST_FIELDS = frozenset(
    {"list-id", "list-post", "list-help", "list-unsubscribe", "list-subscribe", "mailing-list"}
)
BULK = frozenset({"bulk", "list", "junk"})
_MESSAGE_ID = re.compile(r"<[!-;=?-~]{1,250}>")  # printable ASCII, no < > or space


def header_fields(message: bytes) -> dict[str, list[str]]:
    """The header's fields by lower-case name, folded lines joined, values stripped."""
    head = message[:MAX_HEADER]
    end = head.find(b"\n\n")
    if end >= 0:
        head = head[: end + 1]
    fields: dict[str, list[str]] = {}
    name = ""
    for raw in head.decode("utf-8", "replace").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            break
        if line[:1] in (" ", "\t") and name:
            fields[name][-1] += " " + line.strip()
            continue
        field, colon, value = line.partition(":")
        if not colon:
            name = ""
            continue
        name = field.strip().lower()
        fields.setdefault(name, []).append(value.strip())
    return fields


def is_robot(address: str) -> bool:
    local = address.rpartition("@")[0].lower()
    return (
        local in ROBOTS
        or local.startswith("owner-")
        or local.endswith(ROBOT_SUFFIXES)
        or local.startswith("bounce")
    )


def should_reply(sender: str, account_address: str, fields: dict[str, list[str]]) -> bool:
    """Answer this message? Never a bounce, the account itself, a robot, a list or an
    automatic message (RFC 3834 section 2; vacation(1))."""
    if not sender or sender == DOUBLE_BOUNCE_SENDER or "@" not in sender:
        return False
    if any(ord(c) <= 32 or ord(c) == 127 or c in '<>"\\' for c in sender):
        return False  # nothing a header line could be made of
    if sender.lower() == account_address.lower() or is_robot(sender):
        return False
    if any(v.split(";")[0].strip().lower() != "no" for v in fields.get("auto-submitted", [])):
        return False
    if any(v.strip().lower() in BULK for v in fields.get("precedence", [])):
        return False
    if LIST_FIELDS & fields.keys():
        return False
    suppress = ",".join(fields.get("x-auto-response-suppress", [])).lower()
    return not ("all" in suppress or "oof" in suppress)


def _subject(text: str) -> str:
    if text.isascii():
        return text
    encoded = base64.b64encode(text.encode()).decode()
    return f"=?utf-8?b?{encoded}?="  # RFC 2047; at most 200 characters, one word


def _date(when: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when))


def compose(
    account_address: str,
    sender: str,
    vacation: Vacation,
    fields: dict[str, list[str]],
    when: float,
) -> bytes:
    """The reply: from the account to the sender, marked ``Auto-Submitted: auto-replied``."""
    domain = account_address.rpartition("@")[2]
    lines = [
        f"From: <{account_address}>",
        f"To: <{sender}>",
        f"Subject: {_subject(vacation.subject)}",
        f"Date: {_date(when)}",
        f"Message-ID: <{int(when)}.{secrets.token_hex(8)}.vacation@{domain}>",
        "Auto-Submitted: auto-replied (vacation)",
        "Precedence: bulk",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    original = (fields.get("message-id") or [""])[0]
    if _MESSAGE_ID.fullmatch(original):
        lines += [f"In-Reply-To: {original}", f"References: {original}"]
    return ("\n".join(lines) + "\n\n" + vacation.text).encode()
