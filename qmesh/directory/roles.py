"""Who may administer what: the system administrator and a domain's postmaster (issue 14).

qmail's own convention, nothing stored beside it: the account ``postmaster`` of a directory
domain administers that domain (qmailadmin's domain postmaster, vpopmail's ``postmaster``), and
the ``postmaster`` of the canonical local domain (first line of ``locals``, else ``me``)
administers every domain, the queue included. ``qmesh up`` creates that account without a
password; ``qmesh user passwd postmaster --password-stdin`` gives it one.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmesh.directory.authenticate import Account

POSTMASTER_ACCOUNT = "postmaster"


@dataclass(frozen=True, slots=True)
class Role:
    """An administrator: ``domain`` None is the system administrator (every domain)."""

    login: str  # account@domain
    domain: str | None

    @property
    def system(self) -> bool:
        return self.domain is None

    def may(self, domain: str) -> bool:
        """True if this administrator may see and change ``domain`` (stored form)."""
        return self.domain is None or self.domain == domain


def role_of(account: Account, canonical: str | None) -> Role | None:
    """The administrator ``account`` is, or None for an account that administers nothing."""
    if account.name != POSTMASTER_ACCOUNT:
        return None
    if canonical is not None and account.domain == canonical:
        return Role(str(account), None)
    return Role(str(account), account.domain)
