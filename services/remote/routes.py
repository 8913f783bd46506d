"""Static routes: ``smtproutes`` and ``qmtproutes`` (REMOTE-10, REMOTE-11, REMOTE-12, QMTP-30).

Pure. The loader hands over each control as ``(key, relay part)`` pairs split at the first
colon; this module finds the entry that applies to a host and parses its relay part.

Lookup keys, in order: the host itself, each suffix of it starting at a ``.`` (longest first),
then the empty key (a catch-all such as a smarthost). The first key present decides. Keys
compare ASCII case-insensitively (CTL-05). When a key occurs on more than one line the last
line wins, as with qmail's constant map. An empty relay part means "not routed": normal MX
processing. ``qmtproutes`` is consulted first and takes the delivery only with a non-empty
relay; otherwise ``smtproutes`` is consulted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Protocol = Literal["smtp", "qmtp"]

SMTP_PORT = 25
QMTP_PORT = 209

_PORT = re.compile(r"[0-9]{1,5}")


class BadRoute(ValueError):
    """A relay part that names no usable host or port."""


@dataclass(frozen=True, slots=True)
class Relay:
    """Where a route sends mail: a host name (A/AAAA only, never MX) or an IP address."""

    host: str
    port: int
    address: bool  # ``host`` is an IP address, not a name to look up


@dataclass(frozen=True, slots=True)
class Route:
    """How one delivery goes out: by a static relay, or by MX when ``relay`` is None."""

    protocol: Protocol
    relay: Relay | None


MX = Route("smtp", None)


def lookup_keys(host: str) -> list[str]:
    """``host``, its suffixes from each ``.`` (longest first), then ``""`` (REMOTE-10)."""
    host = host.lower()
    suffixes = [host[i:] for i, c in enumerate(host) if c == "." and i > 0]
    return [host, *suffixes, ""] if host else [""]


def find_relay(routes: Sequence[tuple[str, str]], host: str) -> str | None:
    """The relay part of the entry that decides for ``host``; None when no key is present."""
    table: dict[str, str] = {}
    for key, relay in routes:
        table[key.lower()] = relay  # a later line replaces an earlier one with the same key
    for key in lookup_keys(host):
        if key in table:
            return table[key]
    return None


def parse_relay(text: str, default_port: int) -> Relay:
    """``relay``, ``relay:port``, ``[a.b.c.d]``, ``[2001:db8::1]:2525`` (REMOTE-10, -11).

    A bracketed IPv6 address is split at the colon after the closing bracket. Raises
    :class:`BadRoute` for an empty host, a bad port, or an unbracketed IPv6 address.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadRoute(f"relay {text!r} has no closing ']'")
        inner, rest = text[1:end], text[end + 1 :]
        if inner[:5].lower() == "ipv6:":
            inner = inner[5:]
        try:
            host = str(ipaddress.ip_address(inner))
        except ValueError as err:
            raise BadRoute(f"relay {text!r}: {inner!r} is not an IP address") from err
        if rest and not rest.startswith(":"):
            raise BadRoute(f"relay {text!r}: expected ':port' after ']'")
        return Relay(host, _port(text, rest[1:], default_port), True)
    host, colon, port = text.partition(":")
    if colon and ":" in port:
        raise BadRoute(f"relay {text!r}: write an IPv6 relay in brackets, [2001:db8::1]:25")
    if not host:
        raise BadRoute(f"relay {text!r} names no host")
    try:
        return Relay(str(ipaddress.ip_address(host)), _port(text, port, default_port), True)
    except ValueError:
        return Relay(host, _port(text, port, default_port), False)


def _port(text: str, port: str, default: int) -> int:
    if port == "":
        return default
    if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        raise BadRoute(f"relay {text!r}: {port!r} is not a port number")
    return int(port)


def choose_route(
    host: str,
    smtproutes: Sequence[tuple[str, str]],
    qmtproutes: Sequence[tuple[str, str]] = (),
) -> Route:
    """The route of one delivery to ``host`` (QMTP-30, then REMOTE-10); MX if none applies."""
    qmtp = find_relay(qmtproutes, host)
    if qmtp:
        return Route("qmtp", parse_relay(qmtp, QMTP_PORT))
    smtp = find_relay(smtproutes, host)
    if smtp:
        return Route("smtp", parse_relay(smtp, SMTP_PORT))
    return MX
