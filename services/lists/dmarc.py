"""Does the author's domain ask receivers to reject or quarantine mail that fails DMARC?

One lookup of ``_dmarc.<domain>`` (then of the organizational domain, taken as the last two
labels), through one resolver the service builds once from ``QMESH_DNS_SERVERS``
(``host[:port]``, comma-separated; the system's resolvers when unset).
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver

STRICT = ("reject", "quarantine")
LIFETIME = 5.0


def resolver(servers: str | None) -> dns.asyncresolver.Resolver:
    if not servers:
        try:
            return dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            return dns.asyncresolver.Resolver(configure=False)  # every lookup fails: no rewrite
    r = dns.asyncresolver.Resolver(configure=False)
    r.nameservers = []
    for item in (i.strip() for i in servers.split(",") if i.strip()):
        host, port = item.rsplit(":", 1) if item.count(":") == 1 else (item, "")
        r.nameservers.append(host)
        if port:
            r.port = int(port)
    r.lifetime = LIFETIME
    return r


def parse(text: str) -> str | None:
    """The ``p=`` of a DMARC record (``v=DMARC1; p=reject; ...``), or None."""
    tags = [t.strip() for t in text.split(";")]
    if not tags or tags[0].replace(" ", "").upper() != "V=DMARC1":
        return None
    for tag in tags[1:]:
        k, _, v = tag.partition("=")
        if k.strip().lower() == "p":
            return v.strip().lower()
    return None


async def policy(r: dns.asyncresolver.Resolver, domain: str) -> str | None:
    labels = domain.lower().rstrip(".").split(".")
    names = [".".join(labels)]
    if len(labels) > 2:
        names.append(".".join(labels[-2:]))
    for name in names:
        try:
            answer = await r.resolve(f"_dmarc.{name}", "TXT", lifetime=LIFETIME)
        except (dns.exception.DNSException, OSError, ValueError):
            continue
        for rr in answer:
            found = parse(b"".join(rr.strings).decode("ascii", "replace"))
            if found is not None:
                return found
    return None


async def strict(r: dns.asyncresolver.Resolver, domain: str) -> bool:
    """True when From should be rewritten; a failed lookup rewrites nothing."""
    return (await policy(r, domain)) in STRICT
