"""Resolvers built from ``QMESH_DNS_SERVERS``: asynchronous for services, synchronous for commands.

Both ask with EDNS0 (1232-byte payload, so large TXT and TLSA answers come over UDP and a
truncated one is retried over TCP by dnspython) and with the AD bit set, which asks a
validating resolver to say whether the answer was DNSSEC-validated (RFC 6840 section 5.7);
DANE trusts that bit only from the resolvers named here (RFC 7672 section 2.1.1). A host name
among the servers is looked up once, here. With no servers named, the system's configuration
(``/etc/resolv.conf``) is used; if there is none, every lookup fails temporarily rather than
the service refusing to start.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import TypeVar

import dns.asyncresolver
import dns.flags
import dns.nameserver
import dns.resolver

from qmesh.dns.servers import Server, parse_servers

log = logging.getLogger(__name__)

LIFETIME = 30.0  # seconds for one lookup, retries included
EDNS_PAYLOAD = 1232

R = TypeVar("R", dns.resolver.Resolver, dns.asyncresolver.Resolver)


def async_resolver(
    servers: str | Sequence[Server] = "", *, lifetime: float = LIFETIME
) -> dns.asyncresolver.Resolver:
    """The resolver services use; ``servers`` is a ``QMESH_DNS_SERVERS`` value or parsed."""
    return _configure(dns.asyncresolver.Resolver, servers, lifetime)


def sync_resolver(
    servers: str | Sequence[Server] = "", *, lifetime: float = LIFETIME
) -> dns.resolver.Resolver:
    """The same resolver for commands that are not asynchronous (``qmesh dns --check``)."""
    return _configure(dns.resolver.Resolver, servers, lifetime)


def _configure(kind: type[R], servers: str | Sequence[Server], lifetime: float) -> R:
    parsed = parse_servers(servers) if isinstance(servers, str) else tuple(servers)
    if parsed:
        resolver = kind(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(address, s.port)
            for s in parsed
            for address in _addresses(s.host)
        ]
    else:
        try:
            resolver = kind()
        except dns.resolver.NoResolverConfiguration:
            log.warning("dns.no_configuration", extra={"reason": "no nameservers configured"})
            resolver = kind(configure=False)  # every lookup fails temporarily
    resolver.lifetime = lifetime
    resolver.timeout = min(resolver.timeout, lifetime)
    resolver.flags = dns.flags.RD | dns.flags.AD
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    return resolver


def _addresses(host: str) -> list[str]:
    """``host`` itself when it is an address; its addresses when it is a name."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError as err:
        raise ValueError(f"QMESH_DNS_SERVERS: cannot find the address of {host!r}: {err}") from err
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
