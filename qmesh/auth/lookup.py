"""TXT lookups for the checks, over a resolver built from ``QMESH_DNS_SERVERS``.

A lookup answers the TXT texts of a name (empty when the name or the record does not exist)
or raises :class:`DnsTemporary` when DNS cannot say (timeout, SERVFAIL): the caller makes that
``temperror``, never a failure of the message.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.exception
import dns.resolver

TxtLookup = Callable[[str], list[str]]


class DnsTemporary(Exception):
    """DNS did not answer; try again later."""


def txt_lookup(
    resolver: dns.resolver.Resolver, lifetime: Callable[[], float] | None = None
) -> TxtLookup:
    """Lookups over ``resolver``; ``lifetime`` (when given) says how many seconds the next one
    may take, so a caller can hold several lookups to one budget (none left: DnsTemporary)."""

    def lookup(name: str) -> list[str]:
        seconds = resolver.lifetime if lifetime is None else lifetime()
        if seconds <= 0:
            raise DnsTemporary("time for DNS lookups spent")
        try:
            answer = resolver.resolve(
                name if name.endswith(".") else name + ".", "TXT", search=False, lifetime=seconds
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, ValueError) as err:
            raise DnsTemporary(type(err).__name__) from err
        return [b"".join(rd.strings).decode("utf-8", "replace") for rd in answer]

    return lookup
