"""Does the author's domain ask receivers to reject or quarantine mail that fails DMARC?

The policy is read as every DMARC check reads it (``qmesh.auth.dmarc``: the From domain's
record, else the organizational domain's from the public-suffix list), through the resolvers
of ``QMESH_DNS_SERVERS``. A lookup that fails rewrites nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from qmesh.auth.dmarc import published_policy
from qmesh.auth.lookup import DnsTemporary, txt_lookup
from qmesh.dns.resolver import sync_resolver

STRICT = ("reject", "quarantine")
LIFETIME = 5.0

DmarcCheck = Callable[[str], Awaitable[bool]]


def strict_check(servers: str) -> DmarcCheck:
    """A check answering True when From should be rewritten to the list's address."""
    lookup = txt_lookup(sync_resolver(servers, lifetime=LIFETIME))

    async def strict(domain: str) -> bool:
        try:
            return await asyncio.to_thread(published_policy, domain, lookup) in STRICT
        except DnsTemporary:
            return False

    return strict
