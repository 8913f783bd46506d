"""DKIM-Signature header fields for an outgoing message (RFC 6376 section 5, RFC 8463).

Which domain signs: the domain of the ``From:`` header (so the signature aligns for DMARC,
RFC 7489 section 3.1.1) when it has active keys; otherwise the envelope sender's domain when
it has; otherwise nobody, and the message goes out unsigned. Each active selector of that
domain signs (one RSA, one Ed25519: both side by side), with relaxed/relaxed canonicalization
(RFC 6376 section 3.4).

Which header fields: those in :data:`SIGNED` that the message has, each instance; those in
:data:`OVERSIGNED` once more than they occur, present or not, so that a field added later in
transit breaks the signature (RFC 6376 sections 5.4.2 and 8.15).

The signature fields are returned as bytes ending in ``\\n``, to be put before the stored
message (whose lines end in LF; they go out as CRLF). Signing is CPU work on the whole
message: callers run it in a thread.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Sequence
from email import message_from_bytes
from email.policy import compat32

import dkim

from qmesh.dkim.keyring import Selector

SIGNED = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "mime-version", "content-type", "content-transfer-encoding", "content-id",
    "content-description", "in-reply-to", "references", "resent-date", "resent-from",
    "resent-sender", "resent-to", "resent-cc", "resent-message-id", "list-id", "list-help",
    "list-unsubscribe", "list-unsubscribe-post", "list-subscribe", "list-post", "list-owner",
    "list-archive", "autocrypt", "openpgp",
)  # fmt: skip
OVERSIGNED = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "mime-version", "content-type", "content-transfer-encoding", "in-reply-to", "references",
    "list-id", "list-unsubscribe", "list-unsubscribe-post",
)  # fmt: skip
MAX_HEADER_BYTES = 1 << 20
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN = re.compile(
    rf"^{LABEL}(?:\.{LABEL})+$"
)  # how much of the message is looked at for the From: domain


class SignError(ValueError):
    """The message could not be signed (dkimpy refused it); it goes out unsigned."""


def header_block(message: bytes) -> bytes:
    """The header section of ``message`` (up to the first empty line), bounded in size."""
    head = message[:MAX_HEADER_BYTES]
    for sep in (b"\n\n", b"\r\n\r\n"):
        at = head.find(sep)
        if at >= 0:
            return head[: at + len(sep)]
    return head


def from_domain(message: bytes) -> str | None:
    """The one domain of the ``From:`` addresses; None if there is none or more than one."""
    parsed = message_from_bytes(header_block(message), policy=compat32)
    values = parsed.get_all("From") or []
    if len(values) != 1:
        return None
    addresses = email.utils.getaddresses([str(v) for v in values])
    if not addresses or any("@" not in addr for _, addr in addresses):
        return None
    domains = {addr.rpartition("@")[2].lower().rstrip(".") for _, addr in addresses}
    if len(domains) != 1:
        return None
    domain = domains.pop()
    literal = "@" + domain in str(values[0]).lower()  # not joined from pieces by the parser
    return domain if literal and DOMAIN.match(domain) else None


def field_names(message: bytes) -> list[str]:
    """The lower-case names of the header fields, in order."""
    parsed = message_from_bytes(header_block(message), policy=compat32)
    return [name.lower() for name in parsed]


def include_headers(present: Sequence[str]) -> list[bytes]:
    """The h= list: every signed field present, plus one more of each over-signed field."""
    names: list[bytes] = []
    for name in SIGNED:
        count = present.count(name)
        if name in OVERSIGNED:
            count += 1
        names.extend([name.encode()] * count)
    return names


def choose_signers(
    message: bytes, sender: str, signers: Callable[[str], list[Selector]]
) -> list[Selector]:
    """The selectors of the From: domain, else of the envelope sender's domain, else none."""
    candidates = [from_domain(message), sender.rpartition("@")[2].lower() if sender else None]
    for domain in candidates:
        if domain:
            found = signers(domain)
            if found:
                return found
    return []


def signatures(message: bytes, selectors: Sequence[Selector]) -> bytes:
    """One ``DKIM-Signature:`` field per selector, to be put before ``message``."""
    if not selectors:
        return b""
    headers = include_headers(field_names(message))
    out = b""
    for s in selectors:
        try:
            out += dkim.sign(
                message,
                s.selector.encode(),
                s.domain.encode(),
                s.key.private,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=s.key.signature_algorithm,
                include_headers=headers,
                linesep=b"\n",
            )
        except (dkim.DKIMException, ValueError, TypeError, IndexError) as err:
            raise SignError(f"{s.selector}._domainkey.{s.domain}: {err}") from err
    return out
