"""POP3 wire syntax: command lines in, replies out, messages byte-stuffed (RFC 1939, RFC 2449).

Pure functions only. A command line ends at LF with an optional CR before it (POP3-24); the
verb is case-insensitive and the argument is the rest of the line after the spaces that follow
the verb. Messages are kept in stored form (lines end in LF); RETR and TOP send each line with
CR LF, double a leading ``.`` and end with ``.`` CR LF (POP3-15, POP3-16).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_COMMAND_LINE = 255  # octets including CR LF (RFC 2449 section 4, POP3-24)
MAX_SASL_LINE = 2048  # a base64 PLAIN response of 512 octets of credentials fits easily
CRLF = b"\r\n"
TERMINATOR = b".\r\n"

_NUMBER_RE = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # upper-case
    arg: str  # the rest of the line after the spaces following the verb; may be ""


def strip_line_end(line: bytes) -> bytes:
    """``line`` without its LF and the optional CR before it."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def decode(raw: bytes) -> str:
    """Text of a command line; bytes that are not UTF-8 round-trip (surrogateescape)."""
    return raw.decode("utf-8", "surrogateescape")


def parse_command(line: bytes) -> Command:
    """Split a command line into upper-case verb and argument (POP3-24)."""
    text = decode(strip_line_end(line))
    verb, _, rest = text.partition(" ")
    return Command(verb.upper(), rest.lstrip(" "))


def ok(text: str = "") -> bytes:
    """``+OK <text>`` CR LF; qmail's bare ``+OK `` keeps its space."""
    return b"+OK " + text.encode("utf-8", "surrogateescape") + CRLF


def err(text: str) -> bytes:
    return b"-ERR " + text.encode("utf-8", "surrogateescape") + CRLF


def continuation(text: str = "") -> bytes:
    """The SASL server challenge line ``+ <text>`` (RFC 5034)."""
    return b"+ " + text.encode("ascii") + CRLF


def listing(first: bytes, lines: list[str]) -> bytes:
    """A multi-line reply: ``first`` (already a whole line), ``lines``, then ``.``.

    The lines are short ASCII items (``<n> <size>``, capabilities, UIDs), none begins with ``.``.
    """
    return first + b"".join(line.encode("ascii") + CRLF for line in lines) + TERMINATOR


def stuff(content: bytes) -> bytes:
    """Stored-form ``content`` as sent: CR LF line ends, leading dots doubled, ``.`` line last.

    A last line without LF still gets CR LF before the terminator.
    """
    if not content:
        return TERMINATOR
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out = bytearray()
    for line in lines:
        if line.startswith(b"."):
            out += b"."
        out += line
        out += CRLF
    out += TERMINATOR
    return bytes(out)


def top(content: bytes, body_lines: int) -> bytes:
    """The header, the empty separator line and the first ``body_lines`` lines of the body.

    The header ends at the first empty line; a message without one is all header (POP3-16).
    """
    if content.startswith(b"\n"):
        end = 0
    else:
        found = content.find(b"\n\n")
        if found < 0:
            return content
        end = found + 1
    head, rest = content[: end + 1], content[end + 1 :]
    if body_lines <= 0 or not rest:
        return head
    cut = 0
    for _ in range(body_lines):
        nl = rest.find(b"\n", cut)
        if nl < 0:
            return head + rest
        cut = nl + 1
    return head + rest[:cut]


def parse_number(arg: str) -> int | None:
    """A message number or line count: ASCII digits only; ``None`` otherwise (POP3-18)."""
    if not _NUMBER_RE.fullmatch(arg):
        return None
    return int(arg)
