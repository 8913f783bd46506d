"""A post as the subscribers get it: ezmlm-send's header work (issue #15). Pure.

The body is kept byte for byte; only the header block is edited, line by line:
``Return-Path`` and earlier ``List-*`` fields go (ezmlm's ``headerremove``), the list's
fields are added on top (RFC 2369, RFC 2919, RFC 8058), with ezmlm's loop markers
``Mailing-List:`` and ``Delivered-To: mailing list LIST@DOMAIN``. A message that already
carries either marker for this list has been here before and is refused (a loop).
"""

from __future__ import annotations

import email.utils
import re
from email.header import decode_header, make_header

from qmesh.contract.envelope import printable
from qmesh.lists.records import ListRecord

REMOVE = ("return-path", "list-", "precedence", "content-length", "mailing-list")
MAX_HEADER_BYTES = 256 * 1024


def split(message: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its continuation lines and line ends) and the rest."""
    fields: list[bytes] = []
    pos = 0
    while pos < len(message):
        end = message.find(b"\n", pos)
        line = message[pos:] if end < 0 else message[pos : end + 1]
        if line in (b"\n", b"\r\n") or pos > MAX_HEADER_BYTES:
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        elif b":" in line:
            fields.append(line)
        else:
            break  # not a header line: the body starts here (RFC 5322 is strict; so are we)
        pos += len(line)
    return fields, message[pos:]


def name(field: bytes) -> str:
    return field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def value(field: bytes) -> str:
    raw = field.split(b":", 1)[1].decode("utf-8", "replace")
    return " ".join(raw.split())


def first(fields: list[bytes], wanted: str) -> str | None:
    for f in fields:
        if name(f) == wanted:
            return value(f)
    return None


def marker(record: ListRecord) -> str:
    return f"mailing list {record.address}"


def is_loop(fields: list[bytes], record: ListRecord) -> bool:
    """ezmlm-send's test: our ``Delivered-To: mailing list`` or ``Mailing-List`` is there."""
    mine = record.address.lower()
    for f in fields:
        n = name(f)
        if n == "delivered-to" and value(f).lower() == marker(record).lower():
            return True
        if n in ("mailing-list", "list-id") and (
            mine in value(f).lower() or list_id(record).lower() in value(f).lower()
        ):
            return True
    return False


def list_id(record: ListRecord) -> str:
    return f"{record.name}.{record.domain}"


def list_fields(record: ListRecord, unsubscribe_url: str | None = None) -> list[str]:
    at = record.at
    fields = [
        f"Mailing-List: contact {at('help')}; run by qmesh",
        f"List-Id: <{list_id(record)}>",
        f"List-Post: <mailto:{record.address}>",
        f"List-Help: <mailto:{at('help')}>",
        f"List-Subscribe: <mailto:{at('subscribe')}>",
    ]
    if unsubscribe_url:
        fields.append(f"List-Unsubscribe: <{unsubscribe_url}>, <mailto:{at('unsubscribe')}>")
        fields.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")  # RFC 8058
    else:
        fields.append(f"List-Unsubscribe: <mailto:{at('unsubscribe')}>")
    fields += ["Precedence: bulk", f"Delivered-To: {marker(record)}"]
    return fields


def _subject(fields: list[bytes], prefix: str) -> list[bytes]:
    if not prefix:
        return fields
    out = []
    found = False
    for f in fields:
        if name(f) == "subject" and not found:
            found = True
            text = value(f)
            try:
                shown = str(make_header(decode_header(text)))
            except Exception:
                shown = text
            if prefix.lower() not in shown.lower():
                f = f"Subject: {prefix} {text}\n".encode()
        out.append(f)
    if not found:
        out.append(f"Subject: {prefix}\n".encode())
    return out


def author(fields: list[bytes]) -> tuple[str, str] | None:
    """The From field's (display name, address), or None when there is none or it is odd."""
    text = first(fields, "from")
    if text is None:
        return None
    pairs = email.utils.getaddresses([text])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        return None
    return pairs[0]


def rewrite_from(fields: list[bytes], record: ListRecord) -> list[bytes]:
    """DMARC (what Mailman and Sympa do): From becomes the list, the author goes to
    Reply-To unless the message names one already."""
    found = author(fields)
    if found is None:
        return fields
    display, address = found
    shown = f"{display or address} via {record.name}"
    new_from = email.utils.formataddr((printable(shown), record.address))
    out: list[bytes] = []
    has_reply_to = any(name(f) == "reply-to" for f in fields)
    for f in fields:
        if name(f) == "from":
            out.append(f"From: {new_from}\n".encode())
            if not has_reply_to:
                out.append(f"Reply-To: {printable(email.utils.formataddr(found))}\n".encode())
            out.append(f"X-Original-From: {printable(email.utils.formataddr(found))}\n".encode())
        else:
            out.append(f)
    return out


def compose(
    record: ListRecord,
    message: bytes,
    *,
    dmarc_rewrite: bool = False,
    unsubscribe_url: str | None = None,
) -> bytes:
    fields, body = split(message)
    kept = [f for f in fields if not name(f).startswith(REMOVE)]
    # local's own Delivered-To line for the list address stays: it is LOCAL-11's loop marker
    kept = _subject(kept, record.prefix)
    if dmarc_rewrite:
        kept = rewrite_from(kept, record)
    head = "".join(line + "\n" for line in list_fields(record, unsubscribe_url)).encode()
    if not body.startswith((b"\n", b"\r\n")):
        body = b"\n" + body
    return head + b"".join(kept) + body


_ADDR = re.compile(r"[^\s<>@]+@[^\s<>@]+")


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")
