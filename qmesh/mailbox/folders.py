"""Folder names: IMAP names, Maildir++ folders and object-key segments (#13, LOCAL-60).

Dovecot's Maildir++ layout with its default ``.`` separator: the IMAP folder ``Lists.qmail``
is the directory ``./Maildir/.Lists.qmail/`` and ``INBOX`` is ``./Maildir/`` itself. In the
mail bucket the folder segment is the Maildir++ name without its leading dot (what
:func:`qmesh.directory.rules.maildir_folder` returns for a ``.qmail`` line), so a folder that
``local`` delivers into is the IMAP folder of the same name. Names outside ASCII are kept in
modified UTF-7 (RFC 3501 5.1.3), as Dovecot keeps them on disk; a space is written ``%20``
because key segments hold no space.
"""

from __future__ import annotations

import base64
import binascii
import re

from pymap.parsing.modutf7 import modutf7_encode

INBOX = "INBOX"
DELIMITER = "."
MAX_NAME = 200  # characters of the IMAP name
# RFC 6154 special-use folders made for every account, Dovecot's usual names.
SPECIAL_USE: dict[str, str] = {
    "Drafts": "\\Drafts",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
}
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\%*]")


_B64 = re.compile(rb"^[A-Za-z0-9+,]*$")


def modutf7_decode(data: bytes) -> str:
    """Modified UTF-7 (RFC 3501 5.1.3), strictly: ``ValueError`` for an unterminated or
    malformed ``&...-`` run (pymap 0.36's decoder loops forever on ``&Jjo``)."""
    out: list[str] = []
    i = 0
    while i < len(data):
        amp = data.find(b"&", i)
        if amp < 0:
            out.append(data[i:].decode("ascii"))
            break
        out.append(data[i:amp].decode("ascii"))
        end = data.find(b"-", amp + 1)
        if end < 0:
            raise ValueError("unterminated modified UTF-7 run")
        run = data[amp + 1 : end]
        if not run:
            out.append("&")
        else:
            if not _B64.match(run):
                raise ValueError("bad modified UTF-7 run")
            padded = run.replace(b",", b"/") + b"=" * (-len(run) % 4)
            out.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
        i = end + 1
    return "".join(out)


# imapd's decoding of a mailbox argument that is not modified UTF-7 (services/imapd/mutf7.py)
NOT_MUTF7 = "\x00mUTF-7?"


class BadFolderName(ValueError):
    """A name no folder may have: empty parts, a path character, a wildcard or a control."""


def canonical(name: str) -> str:
    """``INBOX`` in any case is ``INBOX`` (RFC 3501 5.1); other names are kept as given."""
    return INBOX if name.upper() == INBOX else name


def check_name(name: str) -> str:
    """Return the canonical form of ``name`` or raise :class:`BadFolderName`."""
    name = canonical(name)
    if name == INBOX:
        return name
    if not name or len(name) > MAX_NAME:
        raise BadFolderName("folder names are 1 to 200 characters")
    if name.startswith(NOT_MUTF7):
        raise BadFolderName("Mailbox name is not valid mUTF-7")
    if _FORBIDDEN.search(name):
        raise BadFolderName("folder names hold no control, '/', '\\', '%' or '*'")
    if any(part == "" for part in name.split(DELIMITER)):
        raise BadFolderName("folder names have no empty level ('..', or '.' at an end)")
    if name.split(DELIMITER)[0].upper() == INBOX:
        raise BadFolderName("INBOX has no subfolders here (Maildir++)")
    return name


def key_segment(name: str) -> str:
    """The object-key segment of folder ``name`` (already checked)."""
    name = check_name(name)
    if name == INBOX:
        return INBOX
    return modutf7_encode(name).decode("ascii").replace(" ", "%20")


def from_segment(segment: str) -> str | None:
    """The IMAP name of an object-key folder segment; ``None`` if it is not a folder."""
    if segment == INBOX:
        return INBOX
    if segment.startswith("."):  # ".mbox" and the like: not Maildir++ folders
        return None
    try:
        name = modutf7_decode(segment.replace("%20", " ").encode("ascii"))
        return check_name(name)
    except (BadFolderName, UnicodeError, ValueError, binascii.Error):
        return None


def parent_names(name: str) -> list[str]:
    """The levels above ``name``: ``a.b.c`` -> ``["a", "a.b"]``."""
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]
