"""Flags: the Maildir info letters ``:2,DFRST`` and IMAP system flags (#13).

Where flags live: the folder index in KV (:mod:`qmesh.mailbox.index`) is the authority for
every IMAP flag and keyword. The letters in an object's name (``cur/<unique>:2,S``) are read
once, when the index first sees the object (a Maildir imported or moved in by hand, or pop3d's
``cur/<unique>:2,``); a flag change after that is one KV compare-and-set and renames no object,
which on S3 would be a copy and a delete per STORE.
"""

from __future__ import annotations

from collections.abc import Iterable

SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM = (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT)

# Maildir's info letters (cr.yp.to/proto/maildir.html), as Dovecot reads them.
LETTERS: dict[str, str] = {"D": DRAFT, "F": FLAGGED, "R": ANSWERED, "S": SEEN, "T": DELETED}
MAX_KEYWORD = 64


def from_info(info: str) -> frozenset[str]:
    """IMAP flags of the letters after ``:2,`` (unknown letters are ignored)."""
    return frozenset(LETTERS[c] for c in info if c in LETTERS)


def to_info(flags: Iterable[str]) -> str:
    """The ``:2,`` letters of ``flags``, sorted as Maildir requires."""
    wanted = set(flags)
    return "".join(sorted(c for c, f in LETTERS.items() if f in wanted))


def normalise(flag: str) -> str | None:
    """A storable flag: a system flag in its canonical case, or a keyword; ``None`` otherwise.

    ``\\Recent`` is a session flag and never stored (RFC 3501 2.3.2).
    """
    if flag.startswith("\\"):
        for known in SYSTEM:
            if flag.lower() == known.lower():
                return known
        return None
    if not flag or len(flag) > MAX_KEYWORD:
        return None
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F or c in '(){%*"\\]' for c in flag):
        return None
    return flag
