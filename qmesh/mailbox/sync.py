"""One account's mailbox over the mail bucket and ``qmesh_mailbox`` (#13).

Every change is read, apply a pure function (:mod:`qmesh.mailbox.index`,
:mod:`qmesh.mailbox.account`), compare-and-set; on a conflict the value is read again and the
function applied again, so replicas never disagree about a UID. Objects are written before the
index names them and deleted before the index forgets them: after a crash an object can at
worst appear once more as a new message, never vanish while the index still lists it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TypeVar, cast

from qmesh.contract.errors import Temporary
from qmesh.mailbox import account as records
from qmesh.mailbox import index as idx
from qmesh.mailbox.account import AccountRecord
from qmesh.mailbox.flags import to_info
from qmesh.mailbox.folders import INBOX, from_segment, key_segment
from qmesh.mailbox.index import Entry, FolderIndex, Listed
from qmesh.mailbox.names import folders_key, index_key
from qmesh.mailbox.versioned import Conflict, Versioned
from qmesh.store.base import BlobNotFound, BlobStore
from qmesh.store.keys import check_key
from qmesh.store.maildir import parse_entry, pop3_size

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS = 20
_SECONDS = re.compile(r"^([0-9]{1,12})\.")
BUSY = "The mailbox is busy; try again. (#4.3.0)"


class IndexCache:
    """Decoded folder indexes of one process, by KV key, revision and checksum (#13).

    Every reader still reads the stored value, so replicas agree exactly as before; what this
    saves is decoding a 10,000-message index again for every command of every session. The
    sessions of a replica that look at the same revision share one :class:`FolderIndex`
    (immutable), so a session holds no copy of its own. Bounded by the number of entries.
    """

    def __init__(self, max_messages: int = 500_000) -> None:
        self._max = max_messages
        self._held = 0
        self._items: OrderedDict[str, tuple[int, int, FolderIndex]] = OrderedDict()

    def decoded(self, key: str, raw: bytes, revision: int) -> FolderIndex:
        check = zlib.crc32(raw)
        found = self._items.get(key)
        if found is not None and found[0] == revision and found[1] == check:
            self._items.move_to_end(key)
            return found[2]
        index = idx.decode(raw)
        self.put(key, revision, check, index)
        return index

    def put(self, key: str, revision: int, check: int, index: FolderIndex) -> None:
        self.drop(key)
        self._items[key] = (revision, check, index)
        self._held += len(index.entries)
        while self._held > self._max and len(self._items) > 1:
            _, (_, _, old) = self._items.popitem(last=False)
            self._held -= len(old.entries)

    def drop(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._held -= len(old[2].entries)


class FolderMissing(KeyError):
    """No folder of that name in the account."""


class FolderExists(ValueError):
    """A folder of that name is there already."""


_LISTED: dict[str, Listed | None] = {}
LISTED_KEPT = 200_000  # parsed names kept by the process (a pure function of the name)
UNKNOWN = -1  # a size or time the name does not carry


def listed(rel: str) -> Listed | None:
    """The :class:`Listed` of an object key relative to its folder, or ``None`` (a listing of
    10,000 objects names the same objects again: each name is parsed once). Its size or time
    is :data:`UNKNOWN` where the name does not carry it (no ``,W=``, no leading seconds)."""
    if rel in _LISTED:
        return _LISTED[rel]
    if len(_LISTED) >= LISTED_KEPT:
        _LISTED.clear()
    item = _LISTED[rel] = _listed(rel)
    return item


def _listed(rel: str) -> Listed | None:
    entry = parse_entry(rel)
    if entry is None:
        return None
    m = _SECONDS.match(entry.unique)
    when = int(m.group(1)) if m else UNKNOWN
    size = entry.size if entry.size is not None else UNKNOWN
    return Listed(entry.unique, rel, size, when, entry.flags)


class AccountMailbox:
    """The folders of one account for the length of one session."""

    def __init__(
        self,
        blobs: BlobStore,
        state: Versioned,
        domain: str,
        account: str,
        *,
        announce: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
        indexes: IndexCache | None = None,
    ) -> None:
        self._blobs = blobs
        self._state = state
        self.domain = domain
        self.account = account
        self._announce = announce
        self._clock = clock
        self._indexes = indexes if indexes is not None else IndexCache()

    # --- compare-and-set -----------------------------------------------------------------

    async def _change(
        self,
        key: str,
        decode: Callable[[bytes], T],
        encode: Callable[[T], bytes],
        fn: Callable[[T | None], T],
    ) -> T:
        for _ in range(ATTEMPTS):
            found = await self._state.read(key)
            old = self._decode(key, found, decode)
            new = fn(old)
            if new is old or new == old:
                return new
            raw = encode(new)
            try:
                if found is None:
                    revision = await self._state.create(key, raw)
                else:
                    revision = await self._state.replace(key, raw, found[1])
            except Conflict:
                continue
            if isinstance(new, FolderIndex):
                self._indexes.put(key, revision, zlib.crc32(raw), new)
            return new
        raise Temporary(BUSY)

    def _decode(
        self, key: str, found: tuple[bytes, int] | None, decode: Callable[[bytes], T]
    ) -> T | None:
        if found is None:
            return None
        if decode is idx.decode:  # the same T: one decode per revision in this process
            return cast(T, self._indexes.decoded(key, found[0], found[1]))
        return decode(found[0])

    async def announce(self) -> None:
        """Tell every reader the account changed (a writer that moved objects by itself)."""
        await self._announced()

    async def _announced(self) -> None:
        if self._announce is not None:
            try:
                await self._announce()
            except Exception as err:  # a missed announcement delays IDLE, nothing more
                log.warning("mailbox.announce_failed", extra={"reason": repr(err)})

    # --- folders ---------------------------------------------------------------------------

    def prefix(self, folder: str) -> str:
        return check_key(f"{self.domain}/{self.account}/{key_segment(folder)}/", prefix=True)

    async def record(self) -> AccountRecord:
        """The account record, made on first use from what the store holds."""
        key = folders_key(self.domain, self.account)
        found = await self._state.read(key)
        if found is not None:
            return records.decode(found[0])
        discovered = await self._discover()
        return await self._change(
            key, records.decode, records.encode, lambda r: r or records.first_record(discovered)
        )

    async def _discover(self) -> list[str]:
        names: set[str] = set()
        for info in await self._blobs.list(f"{self.domain}/{self.account}/"):
            segment = info.key.split("/")[2] if info.key.count("/") >= 3 else ""
            name = from_segment(segment) if segment else None
            if name is not None and name != INBOX:
                names.add(name)
        return sorted(names)

    async def _record_change(self, fn: Callable[[AccountRecord], AccountRecord]) -> AccountRecord:
        await self.record()

        def step(r: AccountRecord | None) -> AccountRecord:
            return fn(r or records.first_record(()))

        return await self._change(
            folders_key(self.domain, self.account), records.decode, records.encode, step
        )

    async def create_folder(self, name: str) -> None:
        if (await self.record()).exists(name):
            raise FolderExists(name)
        await self._record_change(lambda r: records.with_folder(r, name))
        await self.index(name)

    async def delete_folder(self, name: str) -> None:
        if name == INBOX or not (await self.record()).exists(name):
            raise FolderMissing(name)
        for info in await self._blobs.list(self.prefix(name)):
            await self._blobs.delete(info.key)
        await self._state.remove(index_key(self.domain, self.account, key_segment(name)))
        await self._record_change(lambda r: records.without_folder(r, name))

    async def rename_folder(self, before: str, after: str) -> None:
        record = await self.record()
        if not record.exists(before):
            raise FolderMissing(before)
        if record.exists(after):
            raise FolderExists(after)
        moves = [
            (n, after + n[len(before) :])
            for n in record.folders
            if n == before or n.startswith(before + ".")
        ]
        for old, new in moves:
            await self._move_folder(old, new)
        await self._record_change(lambda r: records.renamed(r, before, after))

    async def _move_folder(self, old: str, new: str) -> None:
        """Objects copied then deleted; the index moves with them, so UIDs stay."""
        current = await self.sync(old)
        src, dst = self.prefix(old), self.prefix(new)
        for info in await self._blobs.list(src):
            await self._blobs.copy(info.key, dst + info.key[len(src) :])
            await self._blobs.delete(info.key)
        new_key = index_key(self.domain, self.account, key_segment(new))
        with contextlib.suppress(Conflict):
            await self._state.create(new_key, idx.encode(current))
        if old == INBOX:  # RFC 3501 6.3.5: INBOX's messages move, INBOX stays, empty
            fresh = idx.new_index(current.uidvalidity + 1)
            await self._change(self._index_key(INBOX), idx.decode, idx.encode, lambda _: fresh)
            return
        await self._state.remove(index_key(self.domain, self.account, key_segment(old)))

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        await self._record_change(lambda r: records.with_subscription(r, name, subscribed))

    # --- one folder ------------------------------------------------------------------------

    def _index_key(self, folder: str) -> str:
        return index_key(self.domain, self.account, key_segment(folder))

    async def index(self, folder: str) -> FolderIndex:
        """The folder's index as stored (made, by a first look, if it has none yet)."""
        key = self._index_key(folder)
        found = await self._state.read(key)
        if found is not None:
            return self._indexes.decoded(key, found[0], found[1])
        return await self.sync(folder)

    async def _listing(self, folder: str) -> list[Listed]:
        """The folder's objects from their keys alone (a listing opens no object). Only an
        object the index does not know yet and whose name lacks its size or time is looked
        at: its body read for the size, its metadata for the time."""
        prefix = self.prefix(folder)
        out: list[Listed] = []
        for sub in ("new/", "cur/"):
            for key in await self._blobs.list_keys(prefix + sub):
                item = listed(key[len(prefix) :])
                if item is not None:
                    out.append(item)
        if all(i.size >= 0 and i.when >= 0 for i in out):
            return out
        known = (await self._stored_index(folder)).entries
        complete: list[Listed] = []
        for item in out:
            if item.unique not in known and (item.size < 0 or item.when < 0):
                try:
                    item = await self._completed(prefix, item)
                except BlobNotFound:
                    continue  # gone since the listing
            complete.append(item)
        return complete

    async def _stored_index(self, folder: str) -> FolderIndex:
        key = self._index_key(folder)
        found = await self._state.read(key)
        if found is None:
            return idx.new_index(0)
        return self._indexes.decoded(key, found[0], found[1])

    async def _completed(self, prefix: str, item: Listed) -> Listed:
        """``item`` with the size and time its name does not carry, read from the store."""
        size, when = item.size, item.when
        if when < 0:
            when = int((await self._blobs.stat(prefix + item.key)).modified)
        if size < 0:
            size = pop3_size(await self._blobs.get(prefix + item.key))
        return Listed(item.unique, item.key, size, when, item.info)

    async def sync(self, folder: str) -> FolderIndex:
        """Look at the folder's objects and bring its index up to date (new UIDs, expunges)."""
        index, _ = await self._sync(folder, claim=False)
        return index

    async def sync_and_claim(self, folder: str) -> tuple[FolderIndex, range]:
        """:meth:`sync` and :meth:`claim_recent` in one compare-and-set (a SELECT's first
        look): one encode and one write of a large index instead of two."""
        return await self._sync(folder, claim=True)

    async def _sync(self, folder: str, *, claim: bool) -> tuple[FolderIndex, range]:
        if not (await self.record()).exists(folder):
            raise FolderMissing(folder)
        listing = await self._listing(folder)
        uidvalidity = int(self._clock())
        claimed = range(0)

        def step(old: FolderIndex | None) -> FolderIndex:
            nonlocal claimed
            new = idx.reconcile(old or idx.new_index(uidvalidity), listing)
            if claim:
                new, claimed = idx.claim_recent(new)
            return new

        index = await self._change(self._index_key(folder), idx.decode, idx.encode, step)
        return index, claimed

    async def claim_recent(self, folder: str) -> range:
        claimed = range(0)

        def step(old: FolderIndex | None) -> FolderIndex:
            nonlocal claimed
            new, claimed = idx.claim_recent(old or idx.new_index(int(self._clock())))
            return new

        await self._change(self._index_key(folder), idx.decode, idx.encode, step)
        return claimed

    async def read(self, folder: str, entry: Entry) -> bytes:
        """The stored message (LF line ends); ``BlobNotFound`` if it was expunged meanwhile."""
        return await self._blobs.get(self.prefix(folder) + entry.key)

    def read_range(
        self, folder: str, entry: Entry, offset: int, length: int | None
    ) -> AsyncIterator[bytes]:
        """Stored octets ``offset`` to ``offset + length`` (to the end if ``None``), in chunks,
        reading no more of the object (IMAP's partial FETCH)."""
        return self._blobs.stream_range(self.prefix(folder) + entry.key, offset, length)

    async def read_part(self, folder: str, entry: Entry, offset: int, length: int) -> bytes:
        """Stored octets ``offset`` to ``offset + length`` (fewer where the object ends), in
        one read: a header block's first look."""
        return await self._blobs.get_range(self.prefix(folder) + entry.key, offset, length)

    async def read_parts(
        self, folder: str, entries: Sequence[Entry], offset: int, length: int
    ) -> list[bytes | None]:
        """:meth:`read_part` of each entry (``None`` for an object gone meanwhile), as one
        batch of reads: the header blocks of a folder's first SEARCH."""
        prefix = self.prefix(folder)
        return await self._blobs.get_ranges([prefix + e.key for e in entries], offset, length)

    async def stored_size(self, folder: str, entry: Entry) -> int:
        """The object's size in the store, read from its metadata, not its body."""
        return (await self._blobs.stat(self.prefix(folder) + entry.key)).size

    def _new_unique(self, size: int, wsize: int) -> str:
        now = self._clock()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        return f"{seconds}.M{micros}P{os.urandom(8).hex()}.qmesh,S={size},W={wsize}"

    async def _add(self, folder: str, items: Sequence[tuple[Listed, frozenset[str]]]) -> list[int]:
        uids: list[int] = []

        def step(old: FolderIndex | None) -> FolderIndex:
            nonlocal uids
            new = old or idx.new_index(int(self._clock()))
            uids = []
            for item, flags in items:
                new, uid = idx.add(new, item, flags)
                uids.append(uid)
            return new

        await self._change(self._index_key(folder), idx.decode, idx.encode, step)
        await self._announced()
        return uids

    async def append(
        self, folder: str, message: bytes, flags: frozenset[str], when: float | None = None
    ) -> tuple[int, int]:
        """APPEND: store the message (CRLF made LF, as Maildir keeps it); (UIDVALIDITY, UID)."""
        if not (await self.record()).exists(folder):
            raise FolderMissing(folder)
        body = message.replace(b"\r\n", b"\n")
        unique = self._new_unique(len(body), pop3_size(body))
        rel = f"cur/{unique}:2,{to_info(flags)}"
        await self._blobs.put(self.prefix(folder) + rel, body, create_only=True)
        moment = int(when if when is not None else self._clock())
        (uid,) = await self._add(folder, [(Listed(unique, rel, pop3_size(body), moment), flags)])
        return (await self.index(folder)).uidvalidity, uid

    async def copy(
        self, folder: str, uids: Iterable[int], dest: str
    ) -> tuple[int, list[tuple[int, int]]]:
        """COPY: server-side copies under new unique names; (UIDVALIDITY, [(src, dst)])."""
        if not (await self.record()).exists(dest):
            raise FolderMissing(dest)
        by_uid = (await self.index(folder)).by_uid()
        src_prefix, dst_prefix = self.prefix(folder), self.prefix(dest)
        items: list[tuple[Listed, frozenset[str]]] = []
        sources: list[int] = []
        for uid in sorted(set(uids)):
            if uid not in by_uid:
                continue
            _, entry = by_uid[uid]
            unique = self._new_unique(entry.size, entry.size)
            rel = f"cur/{unique}:2,{to_info(entry.flags)}"
            try:
                await self._blobs.copy(src_prefix + entry.key, dst_prefix + rel)
            except BlobNotFound:
                continue
            items.append((Listed(unique, rel, entry.size, entry.when), entry.flags))
            sources.append(uid)
        dest_uids = await self._add(dest, items) if items else []
        validity = (await self.index(dest)).uidvalidity
        return validity, list(zip(sources, dest_uids, strict=True))

    async def set_flags(
        self,
        folder: str,
        uids: Iterable[int],
        flags: frozenset[str],
        mode: idx.FlagMode,
        *,
        unchanged_since: int | None = None,
    ) -> FolderIndex:
        wanted = list(uids)

        def step(old: FolderIndex | None) -> FolderIndex:
            base = old or idx.new_index(int(self._clock()))
            return idx.set_flags(base, wanted, flags, mode, unchanged_since=unchanged_since)

        before = await self.index(folder)
        after = await self._change(self._index_key(folder), idx.decode, idx.encode, step)
        if after.highest_modseq != before.highest_modseq:
            await self._announced()
        return after

    async def expunge(self, folder: str, uids: Iterable[int]) -> list[int]:
        """Delete the objects, then forget them: gone for IMAP and POP3 alike."""
        by_uid = (await self.index(folder)).by_uid()
        prefix = self.prefix(folder)
        gone: list[str] = []
        done: list[int] = []
        for uid in sorted(set(uids)):
            if uid not in by_uid:
                continue
            unique, entry = by_uid[uid]
            await self._blobs.delete(prefix + entry.key)
            gone.append(unique)
            done.append(uid)
        await self.forget(folder, gone)
        return done

    async def forget(self, folder: str, uniques: Iterable[str]) -> None:
        """An expunge's second half, once the objects are deleted: the entries leave the index
        in one compare-and-set (their UIDs recorded as vanished at a new MODSEQ), then the
        account is announced. IMAP's EXPUNGE and pop3d's QUIT (POP3-21) both end here.

        A folder without an index is left without one: its first listing finds the objects
        gone. If the write fails the objects are gone all the same, and the next listing
        (:meth:`sync`) drops the entries.
        """
        gone = list(uniques)
        key = self._index_key(folder)
        if not gone or await self._state.read(key) is None:
            return
        await self._change(
            key,
            idx.decode,
            idx.encode,
            lambda old: idx.remove(old or idx.new_index(int(self._clock())), gone),
        )
        await self._announced()

    async def usage(self) -> int:
        """Octets the account's objects hold (what ``local`` compares with the quota)."""
        return sum(i.size for i in await self._blobs.list(f"{self.domain}/{self.account}/"))
