"""DNS blocklist lookups through ``QMESH_DNS_SERVERS``' resolver, cached for their TTL.

Each zone is asked for the client's ``A`` record (and, when listed and the control gives no
text, its ``TXT``), all zones at once. An answer is cached for its TTL (a negative one for
the zone's SOA minimum, at most an hour), so a busy client costs one lookup per TTL. A DNS
failure (timeout, SERVFAIL, no resolver) never refuses mail: that zone counts as not
listing the client, and ``smtpd.dnsbl_failed`` is logged. Counted in
``qmesh_smtpd_dnsbl_total{result}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import dns.asyncresolver
import dns.exception
import dns.resolver

from services.smtpd import metrics
from services.smtpd.blocklist import Zone, listed, query_name, refusal
from services.smtpd.verdict import Verdict

log = logging.getLogger(__name__)

LIFETIME = 5.0  # seconds one lookup may take, retries included
NEGATIVE_TTL = 300.0  # an NXDOMAIN without a usable SOA minimum
MAX_TTL = 3600.0
CACHE_SIZE = 10000


class DnsBlocklists:
    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[float, Verdict | None]] = OrderedDict()

    async def check(self, ip: str, zones: tuple[Zone, ...]) -> Verdict | None:
        """The refusal of the first zone (in control order) listing ``ip``, else ``None``."""
        answers = await asyncio.gather(*(self._zone(ip, zone) for zone in zones))
        for zone, verdict in zip(zones, answers, strict=True):
            if verdict is not None:
                metrics.DNSBL.labels("listed").inc()
                log.info("smtpd.dnsbl_listed", extra={"remote": ip, "zone": zone.name})
                return verdict
        metrics.DNSBL.labels("clean").inc()
        return None

    async def _zone(self, ip: str, zone: Zone) -> Verdict | None:
        name = query_name(ip, zone)
        if name is None:
            return None
        now = self._clock()
        key = (zone.name, ip)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            verdict, ttl = await self._lookup(name, zone)
        except (dns.exception.DNSException, OSError) as err:
            metrics.DNSBL.labels("failed").inc()
            log.warning(
                "smtpd.dnsbl_failed",
                extra={"remote": ip, "zone": zone.name, "reason": type(err).__name__},
            )
            return None  # never refuse because DNS failed
        self._cache[key] = (now + min(ttl, MAX_TTL), verdict)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return verdict

    async def _lookup(self, name: str, zone: Zone) -> tuple[Verdict | None, float]:
        try:
            answer = await self._resolver.resolve(name, "A", lifetime=LIFETIME)
        except dns.resolver.NXDOMAIN as err:
            return None, _negative_ttl(err)
        except dns.resolver.NoAnswer:
            return None, NEGATIVE_TTL
        ttl = float(answer.rrset.ttl) if answer.rrset is not None else NEGATIVE_TTL
        if not listed([r.to_text() for r in answer]):
            return None, ttl
        txt = ""
        if not zone.text:
            try:
                texts = await self._resolver.resolve(name, "TXT", lifetime=LIFETIME)
                txt = " ".join(b"".join(r.strings).decode("utf-8", "replace") for r in texts)
            except (dns.exception.DNSException, OSError):
                txt = ""  # listed all the same; the standard sentence
        return refusal(zone, txt), ttl


def _negative_ttl(err: dns.resolver.NXDOMAIN) -> float:
    """RFC 2308: the SOA minimum of the negative answer, if the resolver passed it on."""
    try:
        for response in err.responses().values():
            for rrset in response.authority:
                return float(min(rrset.ttl, rrset[0].minimum))
    except (AttributeError, IndexError, KeyError):
        pass
    return NEGATIVE_TTL
