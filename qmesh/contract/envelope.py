"""Envelopes (ADDR-01, ADDR-08, QUEUE-02).

Addresses are kept unquoted and compared byte-exactly; the last ``@`` separates the local part
from the domain. Any character except NUL may occur; at most 1000 bytes (ADDR-02).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

MAX_ADDRESS_BYTES = 1000
DOUBLE_BOUNCE_SENDER = "#@[]"


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
