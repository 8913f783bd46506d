"""smtpd's trace line (SMTPD-24, SMTPD-58) and the stored form of DATA (SMTPD-51)."""

from __future__ import annotations

import re

from qmesh.contract.dates import qmail_date

_UNSAFE = re.compile(r"[^A-Za-z0-9.@%+/=:\-\[\]]")


def _safe(text: str) -> str:
    return _UNSAFE.sub("?", text)


def received_line(
    *, remotehost: str, helo: str | None, remoteip: str, localname: str, proto: str, when: float
) -> bytes:
    """``Received: from <host> (HELO <helo>) (<ip>)`` LF ``  by <me> with <proto>; <date>`` LF."""
    line = f"Received: from {_safe(remotehost)}"
    if helo is not None and helo.lower() != remotehost.lower():
        line += f" (HELO {_safe(helo)})"
    line += f" ({_safe(remoteip)})\n  by {localname} with {proto}; {qmail_date(when)}\n"
    return line.encode("utf-8", "surrogateescape")


def has_bare_line_end(data: bytes) -> bool:
    """A LF without CR before it, or a CR without LF after it (SMTPD-51)."""
    rest = data.replace(b"\r\n", b"")
    return b"\n" in rest or b"\r" in rest


def stored_form(data: bytes) -> bytes:
    """CR LF becomes LF (the dot-unstuffing is done by the protocol layer)."""
    return data.replace(b"\r\n", b"\n")
