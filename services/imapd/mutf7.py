"""Mailbox names on the wire: modified UTF-7 for IMAP4rev1, UTF-8 after ``ENABLE IMAP4rev2``.

pymap 0.36.7's modified UTF-7 decoder never returns on an unterminated ``&...`` run
(``CREATE "&Jjo"`` would stop the whole event loop). Its parser is pointed at the strict
decoder of :mod:`qmesh.mailbox.folders`, which makes a malformed LIST pattern ``BAD``.

A mailbox argument that is not modified UTF-7 (raw UTF-8 as isync 1.4 sends for a local
folder ``Bücher``, or an unterminated run) is a tagged ``NO`` instead, as in Dovecot ("Mailbox
name is not valid mUTF-7"): mbsync gives up its whole run on a ``BAD`` but only that one
folder on a ``NO``. Such a name is decoded to one starting with ``NOT_MUTF7``, which no folder
may have (:func:`qmesh.mailbox.folders.check_name`), so every command refuses it.

A client that has enabled IMAP4rev2 sends and receives names in UTF-8 (RFC 9051 6.3.1 and
5.1; ``&`` is then an ordinary character). :data:`UTF8_NAMES` says so for the connection:
pymap parses a command and writes its response in the connection's own task, where
:class:`~services.imapd.rev2.Rev2State` sets it. A name that is not UTF-8 is decoded to one
starting with a NUL, which :func:`~qmesh.mailbox.folders.check_name` refuses (``NO``); a LIST
pattern that is not UTF-8 is ``BAD``, as a malformed modified UTF-7 pattern is. Dovecot 2.3
advertises neither IMAP4rev2 nor ``UTF8=ACCEPT`` (RFC 6855), and neither does imapd: only a
rev2 client gets UTF-8 names."""

from __future__ import annotations

import binascii
from contextvars import ContextVar

import pymap.parsing.command.auth as auth_commands
import pymap.parsing.specials.mailbox as mailbox_special
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.modutf7 import modutf7_encode

from qmesh.mailbox.folders import NOT_MUTF7, modutf7_decode

UTF8_NAMES: ContextVar[bool] = ContextVar("imapd_utf8_names", default=False)
NOT_UTF8 = "\x00UTF-8?"  # a control character: no folder name (check_name)


def _decode(data: bytes) -> str:
    if UTF8_NAMES.get():
        return data.decode("utf-8")
    return modutf7_decode(data)


def strict_decode(data: bytes) -> str:
    try:
        return _decode(bytes(data))
    except (ValueError, UnicodeError, binascii.Error) as err:
        raise NotParseable(memoryview(bytes(data))) from err


def mailbox_decode(data: bytes) -> str:
    try:
        return _decode(bytes(data))
    except (ValueError, UnicodeError, binascii.Error):
        marker = NOT_UTF8 if UTF8_NAMES.get() else NOT_MUTF7
        return marker + bytes(data).decode("ascii", "replace")


def mailbox_encode(data: str) -> bytes:
    if UTF8_NAMES.get():
        return data.encode("utf-8")
    return modutf7_encode(data)


def install() -> None:
    mailbox_special.modutf7_decode = mailbox_decode  # type: ignore[attr-defined]
    mailbox_special.modutf7_encode = mailbox_encode  # type: ignore[attr-defined]
    auth_commands.modutf7_decode = strict_decode  # type: ignore[attr-defined]


install()
