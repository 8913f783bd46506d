"""Keywords: ``$Forwarded``, ``$Junk``, ``$NotJunk``, ``$MDNSent`` and the user's own (#13,
RFC 9051 2.3.2, RFC 5788).

A keyword is stored like a system flag, in the folder index's flag set of the message
(:func:`qmesh.mailbox.flags.normalise` says what a keyword may be: 1 to 64 atom characters).
``PERMANENTFLAGS`` names the system flags, the keywords in use in the folder and ``\\*``
(any new keyword is kept); ``FLAGS`` the same without ``\\*``, plus ``\\Recent`` (RFC 3501).

A folder holds at most :data:`MAX_KEYWORDS` distinct keywords, so the index (one KV value)
and every ``FLAGS`` response stay small; a STORE or APPEND that would add more is
``NO [LIMIT]`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from pymap.exceptions import ResponseError
from pymap.mailbox import MailboxSnapshot
from pymap.parsing.response import ResponseBad, ResponseCode, ResponseNo
from pymap.parsing.specials.flag import Flag, Recent, Wildcard, get_system_flags

from qmesh.mailbox.flags import normalise
from qmesh.mailbox.index import FolderIndex

MAX_KEYWORDS = 128  # distinct keywords in one folder (Dovecot's mail_index keyword limit is larger)
WELL_KNOWN = ("$Forwarded", "$Junk", "$NotJunk", "$MDNSent", "$Phishing")


class BadFlag(ResponseError):
    """A system flag RFC 3501 does not define (``\\Bogus``): BAD, as Dovecot answers."""

    def get_response(self, tag: bytes) -> ResponseBad:
        return ResponseBad(tag, b"Invalid system flag.")


def check_system(flags: Iterable[Flag]) -> None:
    for flag in flags:
        name = flag.value.decode("ascii", "replace")
        if name.startswith("\\") and flag != Recent and normalise(name) is None:
            raise BadFlag()


def in_folder(index: FolderIndex) -> frozenset[Flag]:
    """The keywords of the folder as pymap flags."""
    return frozenset(Flag(k.encode("ascii")) for k in in_use(index))


class TooManyKeywords(ResponseError):
    def get_response(self, tag: bytes) -> ResponseNo:
        return ResponseNo(tag, b"Too many keywords in this folder.", ResponseCode.of(b"LIMIT"))


def in_use(index: FolderIndex) -> frozenset[str]:
    """Every keyword some message of the folder carries."""
    return frozenset(f for e in index.entries.values() for f in e.flags if f[:1] != "\\")


def keywords_of(flags: Iterable[Flag]) -> frozenset[str]:
    found = (normalise(f.value.decode("ascii", "replace")) for f in flags)
    return frozenset(f for f in found if f is not None and f[:1] != "\\")


def check_room(index: FolderIndex, flags: Iterable[Flag]) -> None:
    """``NO [LIMIT]`` if storing ``flags`` would give the folder too many keywords."""
    wanted = keywords_of(flags)
    if not wanted:
        return
    have = in_use(index)
    if len(have | wanted) > MAX_KEYWORDS:
        raise TooManyKeywords()


def permanent_flags(index: FolderIndex) -> frozenset[Flag]:
    """System flags, the folder's keywords, and ``\\*``."""
    keywords = (Flag(k.encode("ascii")) for k in in_use(index))
    return (get_system_flags() - {Recent}) | frozenset(keywords) | {Wildcard}


class Snapshot(MailboxSnapshot):
    """pymap's SELECT snapshot whose ``FLAGS`` leaves out ``\\*`` (it belongs only in
    ``PERMANENTFLAGS``) and ``\\Recent`` (no client sets it)."""

    __slots__ = ()

    @property
    def flags(self) -> frozenset[Flag]:
        return super().flags - {Wildcard, Recent}  # Dovecot leaves \\Recent out as well
