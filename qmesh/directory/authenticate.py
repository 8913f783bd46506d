"""checkpassword against the directory: a login name and password to an account (POP3-05, SMTPD-81).

The login name maps to a namespace as mail does (:func:`qmesh.directory.namespaces.parse_login`):
a ``locals`` domain or a bare name to the canonical local namespace, a directory domain to
itself, anything else to nothing. Every way of not finding a usable account (malformed name,
``root``, unknown or disabled domain or account, no verifier, name and password over 512
bytes) ends in the same place as a wrong password, after exactly one verification against a
dummy verifier, so neither reply nor timing tells whether an account exists (LOCAL-59).
A directory that cannot be read raises ``Temporary`` (``-ERR [SYS/TEMP]``, POP3-04).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from qmesh.directory.namespaces import MAX_LOGIN_BYTES, Namespaces, parse_login
from qmesh.directory.passwords import verify_password_async

Verify = Callable[[str | None, str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Account:
    """An authenticated account: ``domain`` is the namespace domain (LOCAL-60)."""

    domain: str
    name: str

    def __str__(self) -> str:
        return f"{self.name}@{self.domain}"


class DomainView(Protocol):
    @property
    def enabled(self) -> bool: ...


class AccountView(Protocol):
    @property
    def enabled(self) -> bool: ...

    @property
    def verifier(self) -> str | None: ...


class DirectoryReader(Protocol):
    async def get_domain(self, name: str) -> DomainView | None: ...

    async def get_account(self, domain: str, name: str) -> AccountView | None: ...


class DirectoryAuthenticator:
    """Login names and passwords checked against the ``qmesh_directory`` records."""

    def __init__(
        self,
        directory: Callable[[], DirectoryReader],
        namespaces: Callable[[], Namespaces],
        *,
        verify: Verify = verify_password_async,
    ) -> None:
        self._directory = directory
        self._namespaces = namespaces
        self._verify = verify

    async def authenticate(self, login: str, password: str) -> Account | None:
        account, verifier = await self._lookup(login, password)
        matched = await self._verify(verifier, password)  # one verification, always
        if account is None or verifier is None or not matched:
            return None
        return account

    async def _lookup(self, login: str, password: str) -> tuple[Account | None, str | None]:
        size = len(login.encode("utf-8", "surrogateescape"))
        size += len(password.encode("utf-8", "surrogateescape"))
        if size > MAX_LOGIN_BYTES:
            return None, None
        namespaces = self._namespaces()
        target = parse_login(login, namespaces)
        if target is None or target.account is None:
            return None, None
        directory = self._directory()
        domain = await directory.get_domain(target.domain)
        if domain is None:
            if target.domain != namespaces.canonical:  # not a directory domain
                return None, None
        elif not domain.enabled:
            return None, None
        record = await directory.get_account(target.domain, target.account)
        if record is None or not record.enabled or not record.verifier:
            return None, None
        return Account(target.domain, target.account), record.verifier
