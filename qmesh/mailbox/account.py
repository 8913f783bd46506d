"""The account record: which folders exist and which are subscribed (#13).

Kept as one JSON value per account in ``qmesh_mailbox``. It is made on the account's first
login with ``INBOX``, the special-use folders (Drafts, Sent, Trash, Junk) and every folder the
store already holds (``local`` may have delivered into ``./Maildir/.Lists/`` before).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qmesh.mailbox.folders import INBOX, SPECIAL_USE, parent_names


@dataclass(frozen=True, slots=True)
class AccountRecord:
    folders: Mapping[str, bool]  # name -> subscribed; INBOX is always there

    def exists(self, name: str) -> bool:
        return name in self.folders

    def subscribed(self) -> list[str]:
        return [n for n, sub in self.folders.items() if sub]


def first_record(found: Iterable[str]) -> AccountRecord:
    folders = dict.fromkeys([INBOX, *SPECIAL_USE], True)
    for name in found:
        for level in [*parent_names(name), name]:
            folders.setdefault(level, True)
    return AccountRecord(folders)


def with_folder(record: AccountRecord, name: str) -> AccountRecord:
    folders = dict(record.folders)
    for level in [*parent_names(name), name]:
        folders.setdefault(level, True)
    return AccountRecord(folders)


def without_folder(record: AccountRecord, name: str) -> AccountRecord:
    return AccountRecord({n: s for n, s in record.folders.items() if n != name})


def renamed(record: AccountRecord, before: str, after: str) -> AccountRecord:
    """``before`` and its children become ``after`` and its children."""
    folders: dict[str, bool] = {}
    for name, sub in record.folders.items():
        if name == before or name.startswith(before + "."):
            folders[after + name[len(before) :]] = sub
        else:
            folders[name] = sub
    for level in parent_names(after):
        folders.setdefault(level, True)
    if before == INBOX:
        folders[INBOX] = record.folders[INBOX]
    return AccountRecord(folders)


def with_subscription(record: AccountRecord, name: str, subscribed: bool) -> AccountRecord:
    folders = dict(record.folders)
    if name in folders:
        folders[name] = subscribed
    return AccountRecord(folders)


def encode(record: AccountRecord) -> bytes:
    return json.dumps({"v": 1, "folders": dict(record.folders)}, separators=(",", ":")).encode()


def decode(raw: bytes) -> AccountRecord:
    doc = json.loads(raw)
    return AccountRecord({str(k): bool(v) for k, v in doc["folders"].items()})
