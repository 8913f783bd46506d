"""``QMESH_DNS_SERVERS``: comma-separated ``host`` or ``host:port``; empty means the system's.

An IPv6 address takes a port in brackets (``[::1]:5353``); a bare IPv6 address has none. A host
name is allowed and looked up once, when the resolver is built. Anything else is refused with
a message that names the bad entry, so a service stops at startup instead of resolving nothing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DNS_PORT = 53
MAX_SERVERS = 16


@dataclass(frozen=True, slots=True)
class Server:
    host: str  # an IP address or a host name
    port: int = DNS_PORT

    def text(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DNS_PORT else f"{host}:{self.port}"


def parse_servers(value: str) -> tuple[Server, ...]:
    """The servers named by ``value``; ``()`` for the system's resolvers.

    Raises :class:`ValueError` naming the entry that is not ``host`` or ``host:port``.
    """
    entries = [e.strip() for e in value.split(",")]
    if all(not e for e in entries):
        return ()
    if len(entries) > MAX_SERVERS:
        raise ValueError(f"QMESH_DNS_SERVERS names more than {MAX_SERVERS} servers")
    return tuple(_server(e) for e in entries)


def _server(entry: str) -> Server:
    if not entry:
        raise ValueError("QMESH_DNS_SERVERS has an empty entry")
    host, port = entry, DNS_PORT
    if entry.startswith("["):
        inside, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"QMESH_DNS_SERVERS: {entry!r} is not [address]:port")
        host = inside
        port = _port(entry, rest[1:]) if rest else DNS_PORT
        _address(entry, host)
    elif entry.count(":") == 1:
        host, _, text = entry.partition(":")
        port = _port(entry, text)
    elif ":" in entry:
        _address(entry, entry)  # a bare IPv6 address
    if not host or not _hostname_or_address(host):
        raise ValueError(f"QMESH_DNS_SERVERS: {entry!r} is not a host or host:port")
    return Server(host.lower(), port)


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"QMESH_DNS_SERVERS: {entry!r} has no valid port")
    return int(text)


def _address(entry: str, text: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError as err:
        raise ValueError(f"QMESH_DNS_SERVERS: {entry!r} is not an IP address") from err


def _hostname_or_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.rstrip(".").split(".")
        return len(host) <= 253 and all(
            0 < len(label) <= 63
            and label.isascii()
            and all(ch.isalnum() or ch == "-" for ch in label)
            and not label.startswith("-")
            for label in labels
        )
    return True
