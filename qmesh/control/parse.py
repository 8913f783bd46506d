"""The reading rules of spec 2.1, applied to the text of one control file.

Pure functions: text in, typed value out, or :class:`ControlError` naming the file and line.
qmail's leniency is kept where the spec keeps it (CTL-03: a numeric control that does not start
with a digit keeps its default); controls of this system with a closed set of values are strict,
because a typo there must stop startup rather than silently change behaviour.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import TypeVar

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_T = TypeVar("_T", bound=str)
_DIGITS = re.compile(r"[0-9]+")
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")


class ControlError(Exception):
    """A control that exists but cannot be read or parsed (CTL-06): callers refuse to start.

    ``control`` is the file name (``databytes``; empty for the directory itself), ``line`` the
    1-based line if known.
    """

    def __init__(self, control: str, reason: str, line: int | None = None) -> None:
        where = f"control/{control}" if control else "control directory"
        if line is not None:
            where += f" line {line}"
        super().__init__(f"{where}: {reason}")
        self.control = control
        self.line = line
        self.reason = reason


def first_line(text: str) -> str:
    """CTL-02: the first line without its trailing spaces, tabs and newline."""
    return text.split("\n", 1)[0].rstrip(" \t\r")


def number(name: str, text: str, default: int) -> int:
    """CTL-03: the unsigned decimal prefix of the first line, else ``default``.

    Digits that run straight into other characters (``2e+06``, ``1.5``, ``12abc``) are an
    error, where qmail would read 2, 1 and 12: a number is never misread. Digits followed by a
    space or tab (``1000000 bytes``) and a line that does not start with a digit are read as
    CTL-03 says.
    """
    line = first_line(text)
    match = _DIGITS.match(line)
    if match is None:
        return default
    if line[match.end() : match.end() + 1] not in ("", " ", "\t"):
        raise ControlError(name, f"{line!r} is not a whole number", 1)
    return int(match.group())


def env_number(variable: str, control: str, value: str) -> int:
    """An environment variable that overrides a numeric control (spec 2.3): digits only.

    ``2e+06`` or ``12abc`` is an error naming the variable, never a number read from its
    first digits.
    """
    if not _DIGITS.fullmatch(value.strip(" \t")):
        raise ControlError(
            control, f"environment {variable}={value!r} is not a number (digits only, as 2000000)"
        )
    return int(value)


def entries(text: str) -> Iterator[tuple[int, str]]:
    """CTL-04: (line number, entry) for each line that is neither empty nor a comment.

    Trailing spaces and tabs are removed; leading spaces stay part of the entry.
    """
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip(" \t\r")
        if line and not line.startswith("#"):
            yield lineno, line


def domains(text: str) -> frozenset[str]:
    """A domain list for matching: entries lower-cased (CTL-05)."""
    return frozenset(entry.lower() for _, entry in entries(text))


def pairs(name: str, text: str) -> tuple[tuple[str, str], ...]:
    """``key:value`` lines split at the first colon, as written (virtualdomains, smtproutes)."""
    result = []
    for lineno, entry in entries(text):
        key, colon, value = entry.partition(":")
        if not colon:
            raise ControlError(name, f"no ':' in {entry!r} (expected key:value)", lineno)
        result.append((key, value))
    return tuple(result)


def flag(name: str, text: str) -> bool:
    """A ``0``/``1`` switch (rcptcheck, programdelivery, pop3plaintext)."""
    value = first_line(text)
    if value not in ("0", "1"):
        raise ControlError(name, f"expected 0 or 1, not {value!r}", 1)
    return value == "1"


def choice(name: str, text: str, allowed: tuple[_T, ...]) -> _T:
    """One word from a closed set, compared case-insensitively (bounceformat)."""
    value = first_line(text).lower()
    for option in allowed:
        if value == option:
            return option
    raise ControlError(name, f"expected one of {', '.join(allowed)}, not {value!r}", 1)


def network(name: str, text: str, lineno: int) -> Network:
    """One CIDR (``10.0.0.0/8``, ``2001:db8::/32``) or one address (a /32 or /128)."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return ipaddress.ip_network(inner, strict=False)
    except ValueError:
        raise ControlError(name, f"{text!r} is not an IP address or CIDR", lineno) from None


def networks(name: str, text: str) -> tuple[Network, ...]:
    """A list of CIDRs, one per line (proxyclients)."""
    return tuple(network(name, entry, lineno) for lineno, entry in entries(text))


def _split_relayclient(entry: str) -> tuple[str, str]:
    """``CIDR`` or ``CIDR:value``; an IPv6 CIDR with a value is written ``[CIDR]:value``."""
    if entry.startswith("["):
        cidr, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return entry, ""  # rejected by network()
        return cidr, rest[1:]
    slash = entry.find("/")
    if slash >= 0:
        colon = entry.find(":", slash)
        return (entry, "") if colon < 0 else (entry[:colon], entry[colon + 1 :])
    try:
        ipaddress.ip_address(entry)
    except ValueError:
        cidr, _, value = entry.partition(":")
        return cidr, value
    return entry, ""


def relayclients(name: str, text: str) -> tuple[tuple[Network, str], ...]:
    """Lines ``CIDR`` or ``CIDR:value``: the network and the RELAYCLIENT value (SMTPD-42)."""
    result = []
    for lineno, entry in entries(text):
        cidr, value = _split_relayclient(entry)
        result.append((network(name, cidr, lineno), value))
    return tuple(result)


def addresses(name: str, text: str) -> tuple[str, ...]:
    """IP addresses, one per line, in their canonical text form (ipme)."""
    result = []
    for lineno, entry in entries(text):
        inner = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        try:
            result.append(str(ipaddress.ip_address(inner)))
        except ValueError:
            raise ControlError(name, f"{entry!r} is not an IP address", lineno) from None
    return tuple(result)


def words(text: str) -> Iterator[tuple[int, str]]:
    """Every word of every entry line: a list that may also be written on one line."""
    for lineno, entry in entries(text):
        for word in entry.replace(",", " ").split():
            yield lineno, word


def mechanisms(name: str, text: str) -> tuple[str, ...]:
    """SASL mechanism names, upper-cased (smtpauth); an empty file offers none."""
    result: list[str] = []
    for lineno, word in words(text):
        mech = word.upper()
        if not _MECHANISM.fullmatch(mech):
            raise ControlError(name, f"{word!r} is not a SASL mechanism name", lineno)
        if mech not in result:
            result.append(mech)
    return tuple(result)


def ports(name: str, text: str) -> tuple[int, ...]:
    """TCP port numbers 1..65535 (submissionports)."""
    result: list[int] = []
    for lineno, word in words(text):
        if not _DIGITS.fullmatch(word) or not 0 < int(word) < 65536:
            raise ControlError(name, f"{word!r} is not a port number", lineno)
        if int(word) not in result:
            result.append(int(word))
    return tuple(result)
