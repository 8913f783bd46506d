"""What a POP3 session needs from the world: an authenticator, maildrops and a recorder.

The session state machine (:mod:`services.pop3d.session`) receives these ports and nothing else;
:mod:`services.pop3d.auth` (directory), :mod:`services.pop3d.mailbox` (object store plus the
maildrop lease) and :mod:`services.pop3d.metrics` implement them. Failures the client is told
about are :class:`qmesh.contract.errors.Temporary` (``-ERR [SYS/TEMP]``) and the two
exceptions below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from qmesh.directory.authenticate import Account

LoginResult = Literal["ok", "failed", "tempfail", "in-use", "blocked"]


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message of a snapshot: its UIDL (POP3-14) and RFC 1939 size (POP3-11)."""

    unique: str
    size: int


class MaildropInUse(Exception):
    """Another session holds the maildrop lease (POP3-26)."""


class MessageGone(Exception):
    """A message of the snapshot no longer exists in the store."""


class LoginBlocked(Exception):
    """Too many failed logins from this client (``authfailures``, docs/defences.md)."""


class Authenticator(Protocol):
    async def authenticate(self, login: str, password: str) -> Account | None:
        """The account ``login`` names if ``password`` is right; ``None`` for every failure.

        Unknown, disabled, password-less, ``root`` and malformed names fail exactly like a
        wrong password, at the cost of one verification (POP3-05). Raise ``Temporary`` when
        the directory cannot be read.
        """
        ...


class Maildrop(Protocol):
    """One account's inbox, leased to one session, numbered at login (POP3-10)."""

    @property
    def messages(self) -> Sequence[MessageInfo]: ...

    async def retrieve(self, index: int) -> bytes:
        """The stored form of message ``index`` (0-based); ``Temporary`` or :class:`MessageGone`."""
        ...

    async def update(self, deleted: frozenset[int]) -> int:
        """Remove ``deleted``, move the rest from new/ to cur/ (POP3-21).

        Returns how many deleted messages could not be removed. Raises ``Temporary`` when no
        change could be made (the store or the lease is gone).
        """
        ...

    async def release(self) -> None:
        """Give up the lease; nothing is changed. Safe to call more than once."""
        ...


class Maildrops(Protocol):
    async def open(self, account: Account) -> Maildrop:
        """Lease and snapshot ``account``'s inbox; :class:`MaildropInUse` or ``Temporary``."""
        ...


class Recorder(Protocol):
    """Outcome counters (implemented by :mod:`services.pop3d.metrics`)."""

    def login(self, result: LoginResult) -> None: ...

    def retrieved(self) -> None: ...

    def deleted(self, count: int) -> None: ...
