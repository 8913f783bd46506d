"""Which addresses a list accepts as subscribers, and VERP's ``box=host`` form (ADDR-04).

Everything here is fed by strangers (envelope senders, the ext of a list address), so it is
strict: one ``@``, a plain local part, a domain of letters, digits, dots and dashes (or an
address literal), no control character, no space, at most 254 bytes.
"""

from __future__ import annotations

import re

MAX_ADDRESS = 254
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{1,45}\]"
)


def address_problem(address: str) -> str | None:
    """Why ``address`` cannot be a subscriber, moderator or owner, or None."""
    if any(ord(c) < 32 or ord(c) == 127 for c in address):
        return "the address holds a control character (CR, LF or another)"
    if len(address.encode("utf-8", "surrogateescape")) > MAX_ADDRESS:
        return f"the address is longer than {MAX_ADDRESS} bytes"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "the address is not of the form user@domain"
    if not _LOCAL.fullmatch(local) or ".." in local or local[0] == "." or local[-1] == ".":
        return "the address has an unusual local part"
    if not _DOMAIN.fullmatch(domain):
        return "the address has an invalid domain"
    return None


def canonical(address: str) -> str:
    """The form compared and stored: local part as given, domain lower-cased (ADDR-05)."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def same(a: str, b: str) -> bool:
    """Subscribers are matched case-insensitively, as ezmlm does."""
    return a.lower() == b.lower()


def verp_encode(address: str) -> str:
    """``box@host`` -> ``box=host`` (ADDR-04)."""
    local, _, domain = address.rpartition("@")
    return f"{local}={domain}"


def verp_decode(text: str) -> str | None:
    """``box=host`` -> ``box@host`` at the last ``=`` (a host holds none), or None."""
    local, eq, domain = text.rpartition("=")
    if not eq or not local or not domain:
        return None
    return f"{local}@{domain}"
