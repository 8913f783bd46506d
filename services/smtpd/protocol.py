"""SMTP command syntax (SMTPD-10..14, SMTPD-31..34, SMTPD-47, SMTPD-85). Pure: bytes in, values out.

Command lines end at LF with one CR before it removed (SMTPD-10); the verb is the text up to the
first space, case-insensitive, the argument the rest after the spaces (SMTPD-11). Paths are
extracted exactly as qmail-smtpd's ``addrparse`` does, plus the MODERN keyword requirement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qmesh.contract.envelope import has_control
from services.smtpd.verdict import Verdict

MAX_LINE = 4096  # SMTPD-72, excluding CRLF
MAX_ADDRESS = 900  # SMTPD-32


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # upper case
    arg: str  # the rest, decoded as UTF-8 with surrogate escapes (byte-exact round trip)
    has_nul: bool = False


def parse_command(line: bytes) -> Command:
    """One command line, with or without its line end."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    text = line.decode("utf-8", "surrogateescape")
    verb, _, rest = text.partition(" ")
    return Command(verb.upper(), rest.lstrip(" "), has_nul=b"\0" in line)


class PathError(ValueError):
    """The path cannot be used; ``reply`` says why (SMTPD-31, -32, -47, -85)."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply

    @property
    def verdict(self) -> Verdict:
        return Verdict.of(self.reply)


SYNTAX = "501 5.5.4 syntax error"
TOO_LONG = "555 5.5.4 syntax error (#5.5.4)"
EMPTY_RCPT = "501 5.1.3 bad recipient address syntax"
NON_ASCII = "553 5.6.7 non-ASCII address requires SMTPUTF8"
BAD_PARAM = "555 5.5.4 unsupported parameter"
BAD_SENDER = "501 5.1.7 bad sender address syntax"
BAD_RECIPIENT = "501 5.1.3 bad recipient address syntax"


@dataclass(frozen=True, slots=True)
class Path:
    address: str
    params: dict[str, str | None] = field(default_factory=dict)  # upper-case keyword -> value


def _strip_keyword(arg: str, keyword: str) -> str:
    if arg[: len(keyword)].upper() != keyword:
        raise PathError(SYNTAX)  # [MODERN] FROM: / TO: is required
    return arg[len(keyword) :].lstrip(" ")


def _scan(text: str, stop: str) -> tuple[str, int]:
    """Unquote ``text`` up to the first unquoted ``stop`` (SMTPD-31 step 4): the address and
    the index of the stop character, ``len(text)`` when there is none."""
    out: list[str] = []
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == stop and not quoted:
            return "".join(out), i
        else:
            out.append(ch)
    return "".join(out), len(text)


def _extract(arg: str) -> tuple[str, str]:
    """(address, what follows it) per SMTPD-31 steps 1, 2, 4 and 5."""
    if "<" in arg:  # up to the first unquoted >, or the rest of the line
        rest = arg[arg.index("<") + 1 :]
        address, end = _scan(rest, ">")
        return address, rest[end + 1 :]
    address, end = _scan(arg, " ")  # no brackets: up to the first unquoted space
    return address, arg[end:]


def _params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        params[key.upper()] = value if eq else None
    return params


def parse_path(arg: str, keyword: str) -> Path:
    """The address and ESMTP parameters of a MAIL (``FROM:``) or RCPT (``TO:``) argument.

    A path holding a control character is refused (RFC 5321 allows none, quoted or not): it
    would otherwise reach ``Return-Path:`` and ``Delivered-To:`` lines (hardening #4).
    """
    address, rest = _extract(_strip_keyword(arg, keyword))
    if address.startswith("@"):  # source route @a,@b:user@c (SMTPD-31 step 3)
        address = address.partition(":")[2]
    if len(address.encode("utf-8", "surrogateescape")) > MAX_ADDRESS:
        raise PathError(TOO_LONG)
    if has_control(address):  # a bare CR or TAB, quoted or escaped too (hardening #4)
        raise PathError(BAD_SENDER if keyword == "FROM:" else BAD_RECIPIENT)
    return Path(address, _params(rest))


def check_ascii(address: str, smtputf8: bool) -> None:
    """SMTPD-85: a non-ASCII path needs SMTPUTF8 on MAIL, and then valid UTF-8."""
    if address.isascii():
        return
    if not smtputf8:
        raise PathError(NON_ASCII)
    try:
        address.encode("utf-8")
    except UnicodeEncodeError as err:  # surrogate escapes: the bytes were not UTF-8
        raise PathError(NON_ASCII) from err


def mail_params(
    params: dict[str, str | None], *, extended: bool, databytes: int
) -> tuple[int | None, bool]:
    """SMTPD-33, SMTPD-56: (declared SIZE, SMTPUTF8) or :class:`PathError`."""
    if params and not extended:
        raise PathError(BAD_PARAM)
    size: int | None = None
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not value.isdigit():
                raise PathError(SYNTAX)
            size = int(value)
            if databytes and size > databytes:
                raise PathError("552 5.3.4 message size exceeds fixed maximum message size")
        elif key == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise PathError(BAD_PARAM)
        elif key == "SMTPUTF8":
            if value is not None:
                raise PathError(BAD_PARAM)
        elif key != "AUTH":
            raise PathError(BAD_PARAM)
    return size, "SMTPUTF8" in params
