"""Composing and sending as the logged-in account (issue 14, QUEUE-03, QUEUE-04).

sqwebmail handed a message to qmail-inject running as the user; here the message is built with
the ``email`` package and goes through the one enqueue (:func:`qmesh.contract.queue.enqueue`,
ARCH-01) with origin ``account``, so its Received line says ``invoked by account
<account>@<domain>`` as qmail's said ``by uid <n>``. ``From`` is always the logged-in address;
a line break or other control character in any one-line field refuses the whole message, so no
header can be smuggled in.
"""

from __future__ import annotations

import email.policy
import re
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

from qmesh.bus.connection import NatsConnection
from qmesh.contract.events import Origin
from qmesh.contract.queue import Queued, enqueue
from qmesh.store.base import BlobStore

MAX_RECIPIENTS = 100
MAX_SUBJECT = 998
_ADDR = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[A-Za-z0-9.\-\[\]:]+$")
_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")
_MSGID = re.compile(r"^<[^\s<>]{1,250}>$")


class BadMessage(ValueError):
    """The message is refused as a whole; ``str(err)`` says why without echoing the input."""


def one_line(name: str, value: str) -> str:
    """A header field's value: refused if it holds CR, LF or another control character."""
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise BadMessage(f"the {name} field contains a line break or control character")
    return value.strip()


def parse_recipients(name: str, value: str) -> list[str]:
    """The addr-specs of an address field; refused if one is not ``local@domain``."""
    value = one_line(name, value)
    if not value:
        return []
    found: list[str] = []
    for _display, addr in getaddresses([value]):
        if not addr or not _ADDR.match(addr) or len(addr) > 254:
            raise BadMessage(f"the {name} field holds something that is not an address")
        found.append(addr)
    return found


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content_type: str
    data: bytes


@dataclass
class Draft:
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    in_reply_to: str = ""
    references: str = ""
    forward: bytes | None = None  # the original, attached as message/rfc822


def recipients(draft: Draft) -> list[str]:
    out: list[str] = []
    for name, value in (("To", draft.to), ("Cc", draft.cc), ("Bcc", draft.bcc)):
        for addr in parse_recipients(name, value):
            if addr.lower() not in (a.lower() for a in out):
                out.append(addr)
    if not out:
        raise BadMessage("give at least one recipient")
    if len(out) > MAX_RECIPIENTS:
        raise BadMessage(f"at most {MAX_RECIPIENTS} recipients")
    return out


def _msgid(value: str) -> str:
    return value if _MSGID.match(value) else ""


def build(draft: Draft, sender: str, when: float | None = None) -> bytes:
    """The message in stored form (LF line ends), with the headers qmail-inject would add."""
    subject = one_line("Subject", draft.subject)[:MAX_SUBJECT]
    msg = EmailMessage(policy=email.policy.default)
    msg["From"] = sender
    for name, value in (("To", draft.to), ("Cc", draft.cc)):
        if parse_recipients(name, value):
            msg[name] = one_line(name, value)
    msg["Subject"] = subject
    moment = datetime.fromtimestamp(when if when is not None else time.time(), UTC)
    msg["Date"] = format_datetime(moment)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    in_reply_to = _msgid(one_line("In-Reply-To", draft.in_reply_to))
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        refs = [r for r in one_line("References", draft.references).split() if _MSGID.match(r)]
        msg["References"] = " ".join([*refs[-20:], in_reply_to])
    msg["MIME-Version"] = "1.0"
    msg.set_content(draft.text.replace("\r\n", "\n"))
    for item in draft.attachments:
        ctype = item.content_type if _TOKEN.match(item.content_type) else ""
        maintype, _, subtype = (ctype or "application/octet-stream").partition("/")
        if maintype in ("multipart", "message"):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(item.data, maintype=maintype, subtype=subtype, filename=item.name)
    if draft.forward is not None:
        original = email.message_from_bytes(draft.forward, policy=email.policy.default)
        msg.add_attachment(original, disposition="inline")
    return msg.as_bytes(policy=email.policy.default.clone(linesep="\n"))


class Sender:
    """The queue port: the one enqueue, as the account that is logged in."""

    def __init__(self, blobs: BlobStore, bus: NatsConnection) -> None:
        self._blobs = blobs
        self._bus = bus

    async def send(self, account: str, rcpts: list[str], body: bytes, client_ip: str) -> Queued:
        origin = Origin(kind="account", account=account, auth_user=account, client_ip=client_ip)
        return await enqueue(
            self._blobs, self._bus, sender=account, recipients=rcpts, body=body, origin=origin
        )
