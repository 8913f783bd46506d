"""The bounce as an RFC 3464 delivery status notification (BOUNCE-20, BOUNCE-21).

Pure. A ``multipart/report; report-type=delivery-status`` message (RFC 6522) with three parts:
the QSBMF notice for humans, the ``message/delivery-status`` fields computed here from the
bounce record, and the returned message (``message/rfc822``, or ``text/rfc822-headers`` when
BOUNCE-09 cut it to its header). When the failed message used SMTPUTF8 the RFC 6533 ``global``
types are used instead. No ``Original-Recipient`` field: it repeats an ORCPT parameter, which
smtpd does not take.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from qmesh.contract.dates import qmail_date
from qmesh.contract.envelope import printable, quote_address
from services.send.state import Failure

REMOTE_SAID = "Remote host said: "  # how remote reports quote the server (REMOTE-30)
EXPIRED = "5.4.7"  # delivery time expired (SEND-24)
UNKNOWN = "5.0.0"

_HASH_CODE = re.compile(r"\(#([45])\.(\d{1,3})\.(\d{1,3})\)")
_REPLY_CODE = re.compile(r"\d{3}[ -]([45])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_CONTINUED = re.compile(r"\d{3}-")
_NOT_BCHAR = re.compile(r"[^0-9A-Za-z'()+_,\-./:=?]")
_PREAMBLE = "This is a MIME-encapsulated message.\n"


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One per-recipient group of the report (RFC 3464 section 2.3)."""

    address: str  # as the bounce shows it (BOUNCE-07)
    status: str
    last_attempt: float
    remote_mta: str | None = None
    diagnostic: tuple[str, ...] = ()  # the remote reply's lines, if the text quotes one


@dataclass(frozen=True, slots=True)
class Report:
    reporting_mta: str
    arrival: float
    recipients: tuple[RecipientStatus, ...]


def remote_reply(report: str) -> tuple[str, ...]:
    """The lines of the last server reply the report quotes (``Remote host said: ...``)."""
    at = report.rfind(REMOTE_SAID)
    if at < 0:
        return ()
    reply: list[str] = []
    for line in report[at + len(REMOTE_SAID) :].split("\n"):
        reply.append(line)
        if not _CONTINUED.match(line):
            break
    while reply and not reply[-1]:
        reply.pop()
    return tuple(reply)


def status_code(failure: Failure) -> str:
    """BOUNCE-21: the last ``(#x.y.z)`` of the text, else the remote reply's enhanced code.

    A failure of the lifetime rule is ``5.4.7``; with neither code, ``5.0.0``. ``Action:
    failed`` always gets class 5 (RFC 3464 2.3.4), so a ``4.y.z`` keeps only subject and detail.
    """
    if failure.expired:
        return EXPIRED
    found = _HASH_CODE.findall(failure.report)
    if found:
        _, subject, detail = found[-1]
        return f"5.{int(subject)}.{int(detail)}"
    reply = remote_reply(failure.report)
    match = _REPLY_CODE.match(reply[0]) if reply else None
    if match:
        return f"5.{int(match[2])}.{int(match[3])}"
    return UNKNOWN


def _mta(host: str) -> str:
    """``Remote-MTA`` name: an IP address as an address literal (RFC 5321 4.1.3)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"


def recipient_status(failure: Failure) -> RecipientStatus:
    remote = failure.remote_host is not None
    return RecipientStatus(
        address=failure.address,
        status=status_code(failure),
        last_attempt=failure.at,
        remote_mta=_mta(failure.remote_host) if failure.remote_host is not None else None,
        diagnostic=remote_reply(failure.report) if remote else (),
    )


def _address_field(address: str, *, utf8: bool) -> str:
    """``rfc822; addr``, or ``utf-8; addr`` (RFC 6533 3) when it is not ASCII."""
    value = quote_address(printable(address), smtputf8=utf8)
    if value.isascii():
        return f"rfc822; {value}"
    if not utf8:  # RFC 6533 utf-8-addr-xtext: \x{HEX} for each non-ASCII character
        value = "".join(
            c if c.isascii() else f"\\x{{{0xFFFD if 0xDC80 <= ord(c) <= 0xDCFF else ord(c):X}}}"
            for c in value
        )
    return f"utf-8; {value}"


def delivery_status(report: Report, *, utf8: bool = False) -> str:
    """The ``message/delivery-status`` body: per-message fields, then one group per recipient."""
    groups = [
        f"Reporting-MTA: dns; {report.reporting_mta}\nArrival-Date: {qmail_date(report.arrival)}\n"
    ]
    for r in report.recipients:
        group = (
            f"Final-Recipient: {_address_field(r.address, utf8=utf8)}\n"
            "Action: failed\n"
            f"Status: {r.status}\n"
            f"Last-Attempt-Date: {qmail_date(r.last_attempt)}\n"
        )
        if r.remote_mta is not None:
            group += f"Remote-MTA: dns; {r.remote_mta}\n"
        if r.diagnostic:
            lines = [
                line if utf8 else line.encode("ascii", "replace").decode() for line in r.diagnostic
            ]
            group += "Diagnostic-Code: smtp; " + "\n ".join(lines) + "\n"
        groups.append(group)
    return "\n".join(groups)


def _boundary(seed: str, bodies: Sequence[bytes]) -> str:
    """A boundary made from ``seed`` that occurs in none of the parts (RFC 2046 5.1.1)."""
    base = _NOT_BCHAR.sub("_", seed)[:60] or "qmesh"
    n = 0
    while True:
        candidate = base if n == 0 else f"{base}.{n}"
        if not any(b"--" + candidate.encode() in body for body in bodies):
            return candidate
        n += 1


def _part_head(content_type: str, description: str, body: bytes) -> str:
    cte = "" if body.isascii() else "Content-Transfer-Encoding: 8bit\n"
    return f"Content-Type: {content_type}\nContent-Description: {description}\n{cte}"


def multipart_report(
    *,
    text: str,
    report: Report,
    returned: bytes,
    whole: bool,
    smtputf8: bool,
    boundary_seed: str,
) -> bytes:
    """The MIME header fields and body of the DSN, to follow the bounce's own header lines."""
    notice = text.encode("utf-8", "surrogateescape")
    status = delivery_status(report, utf8=smtputf8).encode("utf-8", "surrogateescape")
    if smtputf8:
        status_type = "message/global-delivery-status"
        returned_type = "message/global" if whole else "message/global-headers"
    else:
        status_type = "message/delivery-status"
        returned_type = "message/rfc822" if whole else "text/rfc822-headers"
    parts = [
        (_part_head("text/plain; charset=utf-8", "Notification", notice), notice),
        (_part_head(status_type, "Delivery report", status), status),
        (
            _part_head(
                returned_type,
                "Undelivered message" if whole else "Undelivered message header",
                returned,
            ),
            returned,
        ),
    ]
    boundary = _boundary(boundary_seed, [body for _, body in parts])
    eight_bit = any(not body.isascii() for _, body in parts)
    out = [
        (
            "MIME-Version: 1.0\n"
            "Content-Type: multipart/report; report-type=delivery-status;\n"
            f'\tboundary="{boundary}"\n'
            + ("Content-Transfer-Encoding: 8bit\n" if eight_bit else "")
            + "\n"
            + _PREAMBLE
        ).encode()
    ]
    for head, body in parts:
        out.append(f"\n--{boundary}\n{head}\n".encode() + body)
    out.append(f"\n--{boundary}--\n".encode())
    return b"".join(out)
