"""Who may log in to the pages: an account whose password is right and that administers
something (:func:`~qmesh.directory.roles.role_of`). An ordinary account with a right password
fails exactly as a wrong password does, and counts as a failed login for the throttle of every
listener, :class:`~qmesh.limits.logins.Throttle` (defences #12)."""

from __future__ import annotations

from collections.abc import Callable

from qmesh.directory.authenticate import DirectoryAuthenticator
from qmesh.directory.namespaces import Namespaces
from qmesh.directory.roles import Role, role_of


class Administrators:
    """A :class:`~qmesh.limits.logins.Verifier` of administrators."""

    def __init__(
        self, authenticator: DirectoryAuthenticator, namespaces: Callable[[], Namespaces]
    ) -> None:
        self._authenticator = authenticator
        self._namespaces = namespaces

    async def authenticate(self, login: str, password: str) -> Role | None:
        account = await self._authenticator.authenticate(login, password)
        return role_of(account, self._namespaces().canonical) if account else None
