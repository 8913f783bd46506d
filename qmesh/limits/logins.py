"""Login throttling for every listener that takes a password (defences #12, LOCAL-59).

One attempt: a client that is blocked (``authfailures`` failures within ``authblock`` seconds,
or a client that has failed before trying a login name past ``loginfailures``) is refused
before its password is looked at. Otherwise the password is verified (an unknown account
against a dummy verifier, by :class:`~qmesh.directory.authenticate.DirectoryAuthenticator`,
so both take the same time); a failure is counted for the client and for the login name, and
the reply waits a delay that grows with the client's failures. The login name is never
logged and never stored except as a hash; the password never.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from qmesh.limits.anvil import Anvil

log = logging.getLogger(__name__)

A = TypeVar("A", covariant=True)
Refusal = Literal["failed", "blocked"]


class Verifier(Protocol[A]):
    async def authenticate(self, login: str, password: str) -> A | None: ...


@dataclass(frozen=True, slots=True)
class Attempt(Generic[A]):
    """The account, or why not; ``failures`` is the client's count after this attempt."""

    account: A | None
    refusal: Refusal | None = None
    failures: int = 0


class Throttle:
    """Wraps a verifier with the cluster-wide failure counts of :class:`Anvil`."""

    def __init__(
        self,
        anvil: Anvil,
        service: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._anvil = anvil
        self._service = service
        self._sleep = sleep

    async def attempt(
        self, verifier: Verifier[A], remote: str, login: str, password: str
    ) -> Attempt[A]:
        """May raise the verifier's ``Temporary`` (directory unreachable)."""
        if await self._anvil.blocked(remote, login):
            log.warning(
                f"{self._service}.login_blocked", extra={"remote": remote, "outcome": "blocked"}
            )
            return Attempt(None, "blocked")
        account = await verifier.authenticate(login, password)
        if account is not None:
            return Attempt(account)
        failures = await self._anvil.failed(remote, login)
        delay = self._anvil.limits.failure_delay(failures)
        log.info(
            f"{self._service}.login_failed",
            extra={"remote": remote, "attempt": failures, "delay_ms": round(delay * 1000)},
        )
        await self._sleep(delay)
        return Attempt(None, "failed", failures)
