"""Where mail for a host goes: MX lookup, implicit MX, IP literals, ambiguous MX.

REMOTE-13: MX targets in increasing preference, equal preferences in random order, each
resolved to its A then AAAA addresses (REMOTE-15); a name without MX is its own exchanger (the
"implicit MX"); a temporary DNS failure defers; a name that does not exist fails. REMOTE-14:
a null MX fails at once. REMOTE-16: when this system is among the exchangers, only those with
a strictly better preference are used. Routed relays are resolved by A/AAAA only (REMOTE-10).

Lookups go through the dnspython asynchronous resolver handed in by the caller, built from
``QMESH_DNS_SERVERS`` (:mod:`qmesh.dns.resolver`), so tests point it at a DNS server of their
own. dnspython retries a truncated UDP answer over TCP and asks with EDNS0, so answers larger
than 512 bytes work (REMOTE-13). Failures are raised as
:class:`~qmesh.contract.errors.Temporary` or :class:`~qmesh.contract.errors.Permanent` with
qmail-remote's report texts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.MX import MX

from qmesh.contract.errors import Permanent, Temporary
from services.remote import report

log = logging.getLogger(__name__)

Lookup = Literal["found", "nxdomain", "temporary"]


@dataclass(frozen=True, slots=True)
class Target:
    """One address to try, with the preference of the exchanger it belongs to."""

    address: str
    preference: int
    name: str  # the exchanger's name, or the address itself for an IP literal


def ip_literal(host: str) -> str | None:
    """The address of ``[a.b.c.d]`` or ``[IPv6:...]``; None for a host name (REMOTE-13)."""
    if not (host.startswith("[") and host.endswith("]")):
        return None
    inner = host[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


def order_exchangers(
    records: Sequence[tuple[int, str]], rng: random.Random
) -> list[tuple[int, str]]:
    """Increasing preference; exchangers of equal preference in random order (REMOTE-13)."""
    keyed = [(pref, rng.random(), name) for pref, name in records]
    return [(pref, name) for pref, _, name in sorted(keyed)]


def without_self(targets: Sequence[Target], own: Collection[str]) -> list[Target]:
    """REMOTE-16: if this system is an exchanger, keep only strictly better ones.

    Raises :class:`Permanent` with the ambiguous-MX text when none are left.
    """
    mine = {_normal(a) for a in own}
    ranks = [t.preference for t in targets if _normal(t.address) in mine]
    if not ranks:
        return list(targets)
    best_self = min(ranks)
    kept = [t for t in targets if t.preference < best_self]
    if not kept:
        raise Permanent(report.AMBIGUOUS_MX)
    return kept


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _name(host: str) -> dns.name.Name:
    try:
        return dns.name.from_text(host)
    except (dns.exception.DNSException, UnicodeError, ValueError) as err:
        raise Permanent(report.no_host(host)) from err


async def _query(
    resolver: dns.asyncresolver.Resolver, name: dns.name.Name, rdtype: str
) -> tuple[Lookup, list[dns.resolver.Answer]]:
    try:
        answer = await resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return "nxdomain", []
    except dns.exception.DNSException:
        return "temporary", []
    return "found", [answer]


async def addresses(
    resolver: dns.asyncresolver.Resolver, name: dns.name.Name
) -> tuple[Lookup, list[str]]:
    """A then AAAA addresses of ``name``; ``nxdomain`` if it does not exist."""
    (a_state, a), (aaaa_state, aaaa) = await asyncio.gather(
        _query(resolver, name, "A"), _query(resolver, name, "AAAA")
    )
    if "nxdomain" in (a_state, aaaa_state):
        return "nxdomain", []
    found = [rd.to_text() for answer in (*a, *aaaa) for rd in answer]
    if not found and "temporary" in (a_state, aaaa_state):
        return "temporary", []
    return "found", found


async def relay_targets(resolver: dns.asyncresolver.Resolver, host: str) -> list[Target]:
    """A routed relay's addresses, by A/AAAA only, never MX (REMOTE-10)."""
    state, found = await addresses(resolver, _name(host))
    if state == "temporary":
        raise Temporary(report.DNS_TEMPORARY)
    if state == "nxdomain":
        raise Permanent(report.no_host(host))
    if not found:
        raise Permanent(report.NO_ADDRESS)
    return [Target(a, 0, host) for a in found]


async def mx_targets(
    resolver: dns.asyncresolver.Resolver, host: str, rng: random.Random
) -> list[Target]:
    """Every address to try for ``host``, best first (REMOTE-13, REMOTE-14, REMOTE-15)."""
    literal = ip_literal(host)
    if literal is not None:
        return [Target(literal, 0, literal)]
    name = _name(host)
    state, answers = await _query(resolver, name, "MX")
    if state == "temporary":
        raise Temporary(report.DNS_TEMPORARY)
    records = [rd for answer in answers for rd in answer if isinstance(rd, MX)]
    if len(records) == 1 and records[0].exchange == dns.name.root:
        raise Permanent(report.NULL_MX)
    exchangers = [(rd.preference, rd.exchange) for rd in records if rd.exchange != dns.name.root]
    if not exchangers:  # no such name or no MX: the implicit MX
        state, found = await addresses(resolver, name)
        if state == "temporary":
            raise Temporary(report.DNS_TEMPORARY)
        if state == "nxdomain":
            raise Permanent(report.no_host(host))
        if not found:
            raise Permanent(report.NO_ADDRESS)
        return [Target(a, 0, host) for a in found]
    ordered = order_exchangers([(p, n.to_text(omit_final_dot=True)) for p, n in exchangers], rng)
    lookups = await asyncio.gather(*(addresses(resolver, _name(n)) for _, n in ordered))
    targets = [
        Target(a, pref, n)
        for (pref, n), (_, found) in zip(ordered, lookups, strict=True)
        for a in found
    ]
    if not targets:
        if any(state == "temporary" for state, _ in lookups):
            raise Temporary(report.DNS_TEMPORARY)
        raise Permanent(report.NO_ADDRESS)
    return targets
