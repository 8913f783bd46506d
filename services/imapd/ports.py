"""What imapd needs from the world besides the mailbox model: passwords and counters."""

from __future__ import annotations

from typing import Literal, Protocol

from qmesh.directory.authenticate import Account

LoginResult = Literal["ok", "failed", "tempfail", "blocked"]


class Authenticator(Protocol):
    async def authenticate(self, login: str, password: str) -> Account | None:
        """The account if the password is right; ``None`` for every failure (as pop3d)."""
        ...


class Recorder(Protocol):
    def login(self, result: LoginResult) -> None: ...
