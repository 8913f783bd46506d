"""Reading the directory for one address: domain record, then candidate accounts (LOCAL-03..07).

Shared by deliveries and the recipient check (LOCAL-34), so both see an address the same way.
Each record is read once and the result is used for the whole delivery (LOCAL-55). A read
that fails or takes too long is ``Z`` (LOCAL-07): an address that cannot be looked up is
never treated as non-existent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from qmesh.contract.errors import Temporary
from qmesh.directory.names import is_domain_name
from services.local.resolve import NO_DOMAIN, AccountView, RuleBook, Target, candidates, target

UNREADABLE = "Unable to read the directory. (#4.3.0)"
LOOKUP_TIMEOUT = 10.0


class DirectoryReader(Protocol):
    """The read side of :class:`qmesh.directory` that local uses (raises ``Temporary``)."""

    async def get_domain(self, name: str) -> RuleBook | None: ...

    async def get_account(self, domain: str, name: str) -> AccountView | None: ...


DirectorySource = Callable[[], DirectoryReader]


async def find_target(directory: DirectoryReader, namespace: str, local: str) -> Target:
    """Whose rules apply to ``local`` in ``namespace`` (LOCAL-03, LOCAL-04, LOCAL-51).

    A namespace that is no domain name in stored form has no record (ARCH-22).
    """
    if not is_domain_name(namespace):
        raise Temporary(NO_DOMAIN)
    try:
        async with asyncio.timeout(LOOKUP_TIMEOUT):
            domain = await directory.get_domain(namespace)
            if domain is None or domain.enabled:
                for candidate in candidates(local):
                    account = await directory.get_account(namespace, candidate.name)
                    if account is not None and account.enabled:
                        return target(local, domain, (candidate, account))
    except TimeoutError as err:
        raise Temporary(UNREADABLE) from err
    return target(local, domain, None)
