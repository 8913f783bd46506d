"""Maildir unique names in object storage (LOCAL-24, LOCAL-60, ARCH-11, POP3-11, POP3-14).

A delivery's unique name is a function of (queue id, recipient index, instruction index), so a
repeated delivery after a crash writes the same key instead of a second copy. It follows the
Maildir convention ``<seconds>.<uniq>.<host>`` and carries the RFC 1939 size as ``,W=<n>``
(Dovecot's convention), so a POP3 listing needs no body and no metadata request:

    1732510000.M123Q0123456789abcdefR0I0.qmesh,W=2048

The unique name is the UIDL; it stays the same when POP3 moves ``new/x`` to ``cur/x:2,``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qmesh.contract.ids import QueueId, parse_queue_id

HOST = "qmesh"
UNIQUE_RE = re.compile(r"^[\x21-\x7e]{1,70}$")
_SIZE_RE = re.compile(r",W=([0-9]+)(?:,|$)")


def pop3_size(content: bytes) -> int:
    """Octets RETR sends before byte-stuffing: stored size plus one CR per LF (POP3-11)."""
    return len(content) + content.count(b"\n")


def unique_name(qid: QueueId, rcpt_index: int, instruction: int, content: bytes) -> str:
    ms, rand = parse_queue_id(qid).split(".")
    seconds, millis = divmod(int(ms), 1000)
    uniq = f"M{millis:03d}Q{rand}R{rcpt_index}I{instruction}"
    name = f"{seconds}.{uniq}.{HOST},W={pop3_size(content)}"
    if not UNIQUE_RE.fullmatch(name) or "/" in name or ":" in name:
        raise ValueError(f"unique name out of range: {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class MaildirEntry:
    """One object of a Maildir folder as seen in a listing."""

    sub: str  # "new" or "cur"
    unique: str  # the UIDL
    flags: str  # text after ":2," in cur/, "" otherwise
    size: int | None  # RFC 1939 size from ",W=", if present


def parse_entry(key_tail: str) -> MaildirEntry | None:
    """Parse ``new/<unique>`` or ``cur/<unique>:2,<flags>``; ``None`` for anything else."""
    sub, _, name = key_tail.partition("/")
    if sub not in ("new", "cur") or not name or "/" in name:
        return None
    unique, _, info = name.partition(":")
    if not UNIQUE_RE.fullmatch(unique):
        return None
    flags = info[2:] if info.startswith("2,") else ""
    m = _SIZE_RE.search(unique)
    return MaildirEntry(sub, unique, flags, int(m.group(1)) if m else None)
