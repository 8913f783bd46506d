"""SPF (RFC 7208) on pyspf, asking the resolvers of ``QMESH_DNS_SERVERS``.

:func:`check_spf` evaluates the MAIL FROM identity, or the HELO identity when MAIL FROM is
empty (section 2.4), and returns one of ``pass fail softfail neutral none permerror
temperror`` with pyspf's explanation. pyspf enforces the limits of section 4.6.4 (10 DNS
mechanisms, 2 void lookups) and turns a loop into ``permerror``. pyspf looks names up through a
module function; it is pointed, per check, at the lookup handed in (a context variable, so
concurrent checks with different resolvers do not mix).
"""

from __future__ import annotations

import contextvars
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver
import spf

Lookup = Callable[[str, str, bool, float], list[tuple[tuple[str, str], Any]]]
RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
PER_LOOKUP_TIMEOUT = 20.0  # seconds; pyspf's default
TOTAL_TIME = 20.0  # seconds for the whole check (section 4.6.4 suggests at least 20)

_current: contextvars.ContextVar[Lookup] = contextvars.ContextVar("spf_lookup")


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: str
    explanation: str
    identity: str  # "mailfrom" or "helo"
    domain: str


def resolver_lookup(resolver: dns.resolver.Resolver) -> Lookup:
    """pyspf's lookup over ``resolver``: records as pyspf wants them; DNS trouble is TempError."""

    def lookup(
        name: str, qtype: str, strict: bool, timeout: float
    ) -> list[tuple[tuple[str, str], Any]]:
        found: list[tuple[tuple[str, str], Any]] = []
        try:
            answer = resolver.resolve(name, qtype, search=False, lifetime=timeout)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            return found
        except dns.exception.DNSException as err:
            raise spf.TempError(f"DNS {type(err).__name__}") from err
        asked = answer.qname
        for rrset in answer.response.answer:
            # pyspf files answers under the name it asked for, unescaped (spaces from macros)
            owner = name.rstrip(".") if rrset.name == asked else rrset.name.to_text(True)
            rtype = dns.rdatatype.to_text(rrset.rdtype)
            for rd in rrset:
                found.append(((owner, rtype), _value(rtype, rd)))
        return found

    return lookup


def _value(rtype: str, rd: Any) -> Any:
    if rtype == "A":
        return rd.address
    if rtype == "AAAA":
        return socket.inet_pton(socket.AF_INET6, rd.address)
    if rtype == "MX":
        return (rd.preference, rd.exchange.to_text(omit_final_dot=True))
    if rtype in ("PTR", "CNAME"):
        return rd.target.to_text(omit_final_dot=True)
    if rtype in ("TXT", "SPF"):
        return tuple(rd.strings)
    return rd.to_text()


def _dispatch(name: str, qtype: str, strict: bool = True, timeout: float = 20.0) -> Iterator[Any]:
    yield from _current.get()(name, qtype, strict, timeout)


spf.DNSLookup = _dispatch


def check_spf(
    ip: str,
    mail_from: str,
    helo: str,
    lookup: Lookup,
    *,
    per_lookup: float = PER_LOOKUP_TIMEOUT,
    total: float = TOTAL_TIME,
) -> SpfResult:
    """The SPF result for a client at ``ip`` (never raises)."""
    identity = "mailfrom" if mail_from else "helo"
    token = _current.set(lookup)
    try:
        query = spf.query(i=ip, s=mail_from, h=helo, timeout=per_lookup, querytime=total)
        result, _code, explanation = query.check()
        domain = str(query.d or "")
    except (ValueError, TypeError, UnicodeError) as err:  # unusable input: nothing to check
        return SpfResult("none", str(err)[:200], identity, "")
    finally:
        _current.reset(token)
    result = {"error": "temperror", "unknown": "permerror"}.get(result, result)
    if result not in RESULTS:
        result = "permerror"
    return SpfResult(result, str(explanation)[:500], identity, domain)
