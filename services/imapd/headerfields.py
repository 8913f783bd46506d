"""Where a message's header ends and which lines are one of its fields, found as pymap's
``MessageContent.parse`` finds them, without splitting every line in Python (#13 performance).

pymap's rules (pymap 0.36.7, ``pymap/mime/__init__.py``): a line ends at LF, and one CR before
the LF is not part of it; the header ends with the first line made only of white space
(``b" \\t\\n\\r\\x0b\\f"``) and takes that line with it, and a message without such a line has
no header at all; a line that starts with white space continues the field before it; a
field's name is what comes before the first colon of its first line, stripped of white space
and lower-cased (ASCII). A search for one field looks only at the lines that start with its
name: what pymap would keep of them is the same, and so is every value made from them.
"""

from __future__ import annotations

import functools
import re

_BLANK_LINE = re.compile(rb"^[ \t\r\x0b\f]*\n", re.M)
_LAST_BLANK = re.compile(rb"[ \t\r\x0b\f]*\Z")
_TOKEN = re.compile(rb"[!-9;-~]+")  # a name that cannot hold white space or a colon

Lines = list[str]


def header_end(message: bytes) -> int | None:
    """Octets up to and with the line that ends the header; ``None`` if no line does."""
    found = _BLANK_LINE.search(message)
    return None if found is None else found.end()


def header_block(message: bytes) -> bytes:
    """The header of ``message`` up to and with the line that ends it, as pymap splits it
    (the first line of only white space); the whole message if there is no such line."""
    end = header_end(message)
    return message if end is None else message[:end]


def _has_header(block: bytes) -> bool:
    """Whether pymap finds a header in ``block`` (a :func:`header_block`): the block ends
    with a line of only white space, or with LF (its last line is then the empty one)."""
    start = block.rfind(b"\n") + 1
    return _LAST_BLANK.match(block, start) is not None


def _line(block: bytes, start: int) -> tuple[str, int]:
    """The line of ``block`` at ``start`` as pymap cuts it, and where the next one starts."""
    lf = block.find(b"\n", start)
    if lf < 0:
        end = after = len(block)
    else:
        after = lf + 1
        end = lf - 1 if lf > start and block[lf - 1] == 0x0D else lf
    return block[start:end].decode("ascii", "surrogateescape"), after


@functools.lru_cache(maxsize=256)
def _start_of(name: bytes) -> re.Pattern[bytes]:
    """Lines that begin a field named ``name``, in any case."""
    return re.compile(rb"^" + re.escape(name) + rb"[ \t\r\x0b\f]*:", re.M | re.I)


def field_lines(block: bytes, name: bytes) -> list[Lines] | None:
    """The lines of each field named ``name`` (any case) in the header ``block``, in order, as
    pymap groups them; ``None`` for a name this search does not handle (empty, or holding
    white space, a colon or 8-bit octets), which the caller looks up the long way."""
    if not _TOKEN.fullmatch(name):
        return None
    if not _has_header(block):
        return []
    # the line that ends the header is no field and continues none
    end = header_end(block)
    limit = block.rfind(b"\n", 0, len(block) if end is None else end - 1) + 1
    start_of = _start_of(name)
    out: list[Lines] = []
    for found in start_of.finditer(block, 0, limit):
        first, at = _line(block, found.start())
        lines = [first]
        while at < limit and block[at] in b" \t\r\x0b\f":
            more, at = _line(block, at)
            lines.append(more)
        out.append(lines)
    return out
