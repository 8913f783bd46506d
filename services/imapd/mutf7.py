"""pymap 0.36.7's modified UTF-7 decoder never returns on an unterminated ``&...`` run
(``CREATE "&Jjo"`` would stop the whole event loop). Its parser is pointed at the strict
decoder of :mod:`qmesh.mailbox.folders`, which makes a malformed name ``BAD``."""

from __future__ import annotations

import binascii

import pymap.parsing.command.auth as auth_commands
import pymap.parsing.specials.mailbox as mailbox_special
from pymap.parsing.exceptions import NotParseable

from qmesh.mailbox.folders import modutf7_decode


def strict_decode(data: bytes) -> str:
    try:
        return modutf7_decode(bytes(data))
    except (ValueError, UnicodeError, binascii.Error) as err:
        raise NotParseable(memoryview(bytes(data))) from err


def install() -> None:
    mailbox_special.modutf7_decode = strict_decode  # type: ignore[attr-defined]
    auth_commands.modutf7_decode = strict_decode  # type: ignore[attr-defined]


install()
