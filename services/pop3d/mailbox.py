"""The maildrop of one account in the mail bucket, leased to one session (LOCAL-60, POP3-10..27).

At login the inbox is listed once: ``<domain>/<account>/INBOX/new/`` and ``.../cur/``. The
listing is the snapshot; its sizes come from the ``,W=<size>`` in each unique name (POP3-11),
so no body is read unless a name lacks it. Messages are numbered by the listing's modified
time, ties by unique name (POP3-10). Nothing changes until QUIT (POP3-21, POP3-22): then marked
messages are deleted and the others move from ``new/<u>`` to ``cur/<u>:2,`` (copy, then
delete, so an interruption leaves a duplicate that the next snapshot folds into one).

A deletion is an IMAP expunge (#13): once a message's objects are gone, the mailbox model's
:meth:`~qmesh.mailbox.sync.AccountMailbox.forget` (the end of imapd's EXPUNGE) drops the
deleted messages from the inbox index in one compare-and-set and announces the account on
``qmesh.mailbox.<account-key>``, so IDLE sessions on every imapd replica see ``EXPUNGE`` at
once. If that write fails the objects are gone all the same and the next listing repairs the
index. The moves to ``cur/`` are announced too (a selected IMAP session lists again and learns
the new keys). The UIDL stays the Maildir unique name (POP3-14), not the IMAP UID.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from qmesh.contract.errors import Temporary
from qmesh.directory.authenticate import Account
from qmesh.mailbox.index import BadIndex
from qmesh.mailbox.sync import AccountMailbox
from qmesh.store.base import BlobInfo, BlobNotFound, BlobStore
from qmesh.store.keys import mailbox_key, mailbox_prefix
from qmesh.store.maildir import parse_entry, pop3_size
from services.pop3d.ports import MessageGone, MessageInfo

log = logging.getLogger(__name__)

FOLDER = "INBOX"
STALE_TMP_SECONDS = 36 * 3600  # POP3-27


class Lease(Protocol):
    async def confirm(self) -> None:
        """Raise ``Temporary`` unless the lease is still held (renewing it now)."""
        ...

    async def release(self) -> None: ...


class Leases(Protocol):
    async def acquire(self, account: Account) -> Lease:
        """The maildrop lease of ``account``; ``MaildropInUse`` or ``Temporary`` (POP3-26)."""
        ...


@dataclass(frozen=True, slots=True)
class StoredMessage:
    unique: str
    size: int
    key: str  # new/<u> or cur/<u>:2,<flags>, relative to the folder prefix
    modified: float
    leftovers: tuple[str, ...] = ()  # new/<u> beside cur/<u>: an interrupted move

    @property
    def in_new(self) -> bool:
        return self.key.startswith("new/")


def fold(entries: Sequence[tuple[BlobInfo, str, str, int]]) -> list[StoredMessage]:
    """One message per unique name, ``cur/`` preferred, in POP3-10 order.

    ``entries`` are ``(info, key relative to the folder, unique, size)``.
    """
    chosen: dict[str, StoredMessage] = {}
    for info, rel, unique, size in entries:
        seen = chosen.get(unique)
        if seen is None:
            chosen[unique] = StoredMessage(unique, size, rel, info.modified)
        elif seen.in_new and rel.startswith("cur/"):
            leftovers = (*seen.leftovers, seen.key)
            chosen[unique] = StoredMessage(unique, size, rel, info.modified, leftovers)
        elif rel.startswith("new/"):
            chosen[unique] = StoredMessage(
                seen.unique, seen.size, seen.key, seen.modified, (*seen.leftovers, rel)
            )
        # a second cur/ name for one unique (other flags) is left alone
    return sorted(chosen.values(), key=lambda m: (m.modified, m.unique))


Mailboxes = Callable[[Account], AccountMailbox]


class StoreMaildrop:
    """:class:`services.pop3d.ports.Maildrop` over a :class:`BlobStore`."""

    def __init__(
        self,
        store: BlobStore,
        account: Account,
        lease: Lease,
        messages: list[StoredMessage],
        mailbox: Mailboxes | None = None,
    ) -> None:
        self._mailbox = mailbox
        self._store = store
        self._account = account
        self._lease = lease
        self._prefix = mailbox_prefix(account.domain, account.name, FOLDER)
        self._messages = messages
        self._released = False

    @property
    def messages(self) -> Sequence[MessageInfo]:
        return [MessageInfo(m.unique, m.size) for m in self._messages]

    async def retrieve(self, index: int) -> bytes:
        try:
            return await self._store.get(self._prefix + self._messages[index].key)
        except BlobNotFound as err:
            raise MessageGone(self._messages[index].unique) from err

    async def update(self, deleted: frozenset[int]) -> int:
        await self._lease.confirm()
        failed = 0
        gone: list[str] = []
        for index in sorted(deleted):
            message = self._messages[index]
            try:
                for rel in (message.key, *message.leftovers):
                    await self._store.delete(self._prefix + rel)
            except Temporary as err:
                failed += 1
                log.warning("pop3d.delete_failed", extra={"reason": err.text})
            else:
                gone.append(message.unique)
        await self._expunged(gone)
        moved = False
        for index, message in enumerate(self._messages):
            if index not in deleted:
                moved = await self._settle(message) or moved
        if moved and self._mailbox is not None:
            # keys changed under the index: selected IMAP sessions list the folder again
            try:
                await self._mailbox(self._account).announce()
            except Temporary as err:
                log.warning("pop3d.index_not_updated", extra={"reason": err.text})
        return failed

    async def _expunged(self, gone: list[str]) -> None:
        """Tell the mailbox model the deleted messages are gone (an IMAP expunge, #13)."""
        if not gone or self._mailbox is None:
            return
        try:
            await self._mailbox(self._account).forget(FOLDER, gone)
        except (Temporary, BadIndex) as err:  # the objects are gone: the next listing repairs it
            log.warning("pop3d.index_not_updated", extra={"reason": str(err)})

    async def _settle(self, message: StoredMessage) -> bool:
        """Move a kept message from new/ to cur/; finish an interrupted move. Whether an
        object went."""
        if not message.in_new and not message.leftovers:
            return False
        try:
            if message.in_new:
                cur = mailbox_key(
                    self._account.domain, self._account.name, FOLDER, "cur", message.unique + ":2,"
                )
                await self._store.copy(self._prefix + message.key, cur)
                await self._store.delete(self._prefix + message.key)
            for rel in message.leftovers:
                await self._store.delete(self._prefix + rel)
        except BlobNotFound:
            pass
        except Temporary as err:  # the message stays in new/ and is seen again next time
            log.warning("pop3d.move_failed", extra={"reason": err.text})
        return True

    async def release(self) -> None:
        if not self._released:
            self._released = True
            await self._lease.release()


class StoreMaildrops:
    """:class:`services.pop3d.ports.Maildrops`: lease, clean ``tmp/``, snapshot."""

    def __init__(
        self,
        store: BlobStore,
        leases: Leases,
        *,
        mailbox: Mailboxes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._leases = leases
        self._mailbox = mailbox
        self._clock = clock

    async def open(self, account: Account) -> StoreMaildrop:
        lease = await self._leases.acquire(account)
        try:
            messages = await snapshot(self._store, account)
            await clean_tmp(self._store, account, self._clock() - STALE_TMP_SECONDS)
        except BaseException:
            await lease.release()
            raise
        return StoreMaildrop(self._store, account, lease, messages, self._mailbox)


async def snapshot(store: BlobStore, account: Account) -> list[StoredMessage]:
    """The inbox as listed now, numbered per POP3-10 (a missing inbox is empty)."""
    prefix = mailbox_prefix(account.domain, account.name, FOLDER)
    entries: list[tuple[BlobInfo, str, str, int]] = []
    for sub in ("new/", "cur/"):
        for info in await store.list(prefix + sub):
            rel = info.key[len(prefix) :]
            entry = parse_entry(rel)
            if entry is None:
                continue
            size = entry.size
            if size is None:  # a name without ,W=: the body has to be read once
                try:
                    size = pop3_size(await store.get(info.key))
                except BlobNotFound:
                    continue
            entries.append((info, rel, entry.unique, size))
    return fold(entries)


async def clean_tmp(store: BlobStore, account: Account, before: float) -> None:
    """Remove staging objects under ``tmp/`` last written before ``before`` (POP3-27)."""
    prefix = mailbox_prefix(account.domain, account.name, FOLDER) + "tmp/"
    try:
        for info in await store.list(prefix):
            if info.modified < before:
                await store.delete(info.key)
                log.info("pop3d.tmp_removed", extra={"key": info.key})
    except Temporary as err:
        log.warning("pop3d.tmp_clean_failed", extra={"reason": err.text})
