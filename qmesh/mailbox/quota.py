"""Quota: an account's limit against its usage, one rule for every writer (LOCAL-33, #13).

The limit is the directory's ``quota`` of the account (``qmesh user quota``, vpopmail's
``vsetuserquota``); the usage is what :meth:`qmesh.mailbox.sync.AccountMailbox.usage` counts,
the octets of every object of the account in every folder. ``local`` defers a delivery that
would go over (``Recipient's mailbox is full. (#4.2.2)``), imapd refuses an APPEND or COPY
with ``NO [OVERQUOTA]`` and reports both figures in IMAP's QUOTA resource ``STORAGE``
(RFC 9208 5.1: units of 1024 octets, rounded up as Dovecot rounds them).
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "User quota"  # the one quota root of an account (Dovecot's name): every folder counts
RESOURCE = "STORAGE"
UNIT = 1024


@dataclass(frozen=True, slots=True)
class Quota:
    used: int  # octets
    limit: int | None  # octets; None: no quota

    def storage(self) -> tuple[int, int] | None:
        """RFC 9208's ``STORAGE`` usage and limit in KiB; ``None`` without a limit."""
        if self.limit is None:
            return None
        return -(-self.used // UNIT), -(-self.limit // UNIT)


def exceeds(limit: int | None, used: int, size: int) -> bool:
    """Would writing ``size`` more octets take an account using ``used`` over ``limit``?"""
    return limit is not None and used + size > limit
