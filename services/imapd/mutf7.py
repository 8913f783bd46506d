"""pymap 0.36.7's modified UTF-7 decoder never returns on an unterminated ``&...`` run
(``CREATE "&Jjo"`` would stop the whole event loop). Its parser is pointed at the strict
decoder of :mod:`qmesh.mailbox.folders`, which makes a malformed LIST pattern ``BAD``.

A mailbox argument that is not modified UTF-7 (raw UTF-8 as isync 1.4 sends for a local
folder ``Bücher``, or an unterminated run) is a tagged ``NO`` instead, as in Dovecot ("Mailbox
name is not valid mUTF-7"): mbsync gives up its whole run on a ``BAD`` but only that one
folder on a ``NO``. Such a name is decoded to one starting with ``NOT_MUTF7``, which no folder
may have (:func:`qmesh.mailbox.folders.check_name`), so every command refuses it."""

from __future__ import annotations

import binascii

import pymap.parsing.command.auth as auth_commands
import pymap.parsing.specials.mailbox as mailbox_special
from pymap.parsing.exceptions import NotParseable

from qmesh.mailbox.folders import NOT_MUTF7, modutf7_decode


def strict_decode(data: bytes) -> str:
    try:
        return modutf7_decode(bytes(data))
    except (ValueError, UnicodeError, binascii.Error) as err:
        raise NotParseable(memoryview(bytes(data))) from err


def mailbox_decode(data: bytes) -> str:
    try:
        return modutf7_decode(bytes(data))
    except (ValueError, UnicodeError, binascii.Error):
        return NOT_MUTF7 + bytes(data).decode("ascii", "replace")


def install() -> None:
    mailbox_special.modutf7_decode = mailbox_decode  # type: ignore[attr-defined]
    auth_commands.modutf7_decode = strict_decode  # type: ignore[attr-defined]


install()
