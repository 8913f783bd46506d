"""Envelopes (ADDR-01, ADDR-08, QUEUE-02).

Addresses are kept unquoted and compared byte-exactly; the last ``@`` separates the local part
from the domain. Any character except NUL may occur; at most 1000 bytes (ADDR-02).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

MAX_ADDRESS_BYTES = 1000
DOUBLE_BOUNCE_SENDER = "#@[]"

_DOT_ATOM_CHARS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]*")
_QUOTED_SPECIALS = re.compile(r'(["\\\r\n])')
# Unicode's control characters (category Cc): C0, DEL and C1, no more and no fewer
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _check_address(value: str) -> str:
    if "\x00" in value:
        raise ValueError("address contains NUL")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_ADDRESS_BYTES:
        raise ValueError("address longer than 1000 bytes")
    return value


Address = Annotated[str, AfterValidator(_check_address)]


def split_address(address: str) -> tuple[str, str]:
    """``(local, domain)`` split at the last ``@``; domain is ``""`` when there is none."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain


def has_control(address: str) -> bool:
    """Whether ``address`` holds a control character (C0, DEL or C1; hardening #4).

    smtpd refuses such a path: a bare CR or an LF in it would end a header line wherever the
    address is written into one (``Return-Path:``, ``Delivered-To:``, bounces).
    """
    return _CONTROL.search(address) is not None


def printable(text: str) -> str:
    """``text`` with every control character replaced by ``_``, for a header line.

    ADDR-01 replaces each LF; every other control character, a bare CR above all, is treated
    the same, so no address can end a header line or start a new one (hardening #4).
    """
    if not has_control(text):
        return text
    return _CONTROL.sub("_", text)


def _is_utf8_char(c: str) -> bool:
    """A non-ASCII character that came from valid UTF-8 (not a surrogate-escaped byte)."""
    return ord(c) >= 128 and not 0xDC80 <= ord(c) <= 0xDCFF


def quote_address(address: str, *, smtputf8: bool = False) -> str:
    """ADDR-07: the address as written in SMTP, ``Return-Path:`` or a bounce ``To:``.

    The local part is put in double quotes when it is empty, holds a character outside the
    dot-atom set (a non-ASCII one too, unless ``smtputf8``), starts or ends with ``.`` or holds
    ``..``; inside the quotes ``"``, ``\\``, CR and LF get a ``\\``. The domain is never
    quoted. The empty address (a bounce's sender) stays empty.
    """
    if address == "":
        return ""
    local, domain = split_address(address)
    chars = "".join(c for c in local if not (smtputf8 and _is_utf8_char(c)))
    plain = (
        local != ""
        and _DOT_ATOM_CHARS.fullmatch(chars) is not None
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
    )
    if not plain:
        local = '"' + _QUOTED_SPECIALS.sub(r"\\\1", local) + '"'
    return f"{local}@{domain}" if "@" in address else local


class Envelope(BaseModel):
    """Sender, then the recipients in order, repeats kept (ADDR-06)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender: Address
    recipients: tuple[Address, ...]

    def qmail_form(self) -> bytes:
        """qmail-queue's envelope form (ADDR-08): ``F``sender NUL, ``T``rcpt NUL ..., NUL."""
        parts = [b"F" + self.sender.encode("utf-8", "surrogateescape") + b"\0"]
        parts += [b"T" + r.encode("utf-8", "surrogateescape") + b"\0" for r in self.recipients]
        return b"".join(parts) + b"\0"
