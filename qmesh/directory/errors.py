"""What can go wrong when the directory is read or edited, with messages an operator can act on.

Every refusal is a :class:`DirectoryError` naming the bad value. A directory that cannot be
read at all (NATS down, a timeout) is not one of these: it is
:class:`qmesh.contract.errors.Temporary`, because an address that cannot be looked up must
never be treated as non-existent (LOCAL-07).
"""

from __future__ import annotations


class DirectoryError(Exception):
    """A refused directory operation; ``str(err)`` is the message for the operator."""


class InvalidName(DirectoryError):
    """An account or domain name outside LOCAL-53 / LOCAL-54, or a malformed address."""


class InvalidRule(DirectoryError):
    """A rule name or rule text the CLI refuses to store (LOCAL-16, LOCAL-57, LOCAL-61)."""


class InvalidPassword(DirectoryError):
    """A password that cannot be stored (empty, too long, or with characters POP3 cannot send)."""


class RecordExists(DirectoryError):
    """The record to create is already there."""


class RecordMissing(DirectoryError):
    """The record to change or delete is not there."""


class Refused(DirectoryError):
    """An edit the directory's own rules forbid (LOCAL-27, LOCAL-58)."""


class EditConflict(DirectoryError):
    """Other writers kept changing the record; the edit was given up (LOCAL-55)."""
