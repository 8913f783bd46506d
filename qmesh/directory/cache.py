"""Directory records kept in memory while a watch of the bucket says they have not changed.

``local`` reads the domain record and an account record for every delivery and every
recipient check (LOCAL-03, LOCAL-34); each read is a round trip to NATS. This component keeps
the records it was asked for, at most :data:`SIZE` of them, and drops one as soon as the
bucket says its key changed: a push subscription to the changes of ``qmesh_directory`` (new
writes only, headers only), so a change reaches the copy within moments, like a read racing
the change, and well within the 60 s LOCAL-55 allows a cache (CTL-07).

Only records found are kept. A key the copy lacks is read from the bucket, so an account or a
domain created a moment ago is never taken as absent by the copy; a record changed or deleted
is used until its change arrives, as a delivery that read it a moment earlier would. While the
subscription is not in place (before the first one, after a reconnect, after a failure) the
copy is empty and every read goes to the bucket: the copy never holds what it could not watch.
A read that overlaps a change is used but not kept (:attr:`DirectoryCache.changes`). A record
is kept at most :data:`MAX_AGE` seconds, so even a watch that stopped without a word cannot hold
it past LOCAL-55's bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from qmesh.bus.connection import NatsConnection
from qmesh.directory.records import AccountRecord, DomainRecord, account_key, domain_key
from qmesh.directory.store import Directory
from qmesh.directory.watching import DirectoryWatch, Entry, NewWrites, Watcher

SIZE = 10_000  # records kept (ARCH-26); the least recently used goes first
MAX_AGE = 30.0  # seconds a record is used before it is read again

Record = DomainRecord | AccountRecord


class DirectoryCache(DirectoryWatch):
    """The copy and its watch; :meth:`reader` reads through it."""

    def __init__(
        self,
        conn: NatsConnection,
        *,
        size: int = SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(conn)
        self._size = size
        self._clock = clock
        self._records: OrderedDict[str, tuple[Record, float]] = OrderedDict()
        self.watching = False
        self.changes = 0  # changes seen and watches (re)started: a read that spans one is not kept

    def reader(self, source: Callable[[], Directory]) -> CachedDirectory:
        """A directory reader that asks ``source`` for what the copy lacks."""
        return CachedDirectory(self, source)

    def get(self, key: str) -> Record | None:
        found = self._records.get(key)
        if found is None:
            return None
        record, until = found
        if self._clock() >= until:
            del self._records[key]
            return None
        self._records.move_to_end(key)
        return record

    def keep(self, key: str, record: Record, since: int) -> None:
        """Keep ``record``, read from the bucket, if no change arrived since ``since``."""
        if not self.watching or self.changes != since:
            return
        self._records[key] = (record, self._clock() + MAX_AGE)
        if len(self._records) > self._size:
            self._records.popitem(last=False)

    async def _open(self) -> Watcher:
        return await NewWrites.open(self._conn)  # changes from now on; reads fill the copy

    def _loaded(self) -> None:
        self.changes += 1
        self.watching = True

    def _seen(self, entry: Entry) -> None:
        self.changes += 1
        self._records.pop(entry.key, None)

    def _ended(self) -> None:
        """No watch runs: the copy forgets everything and keeps nothing until one is in place."""
        self.watching = False
        self.changes += 1
        self._records.clear()


class CachedDirectory:
    """``get_domain`` and ``get_account`` (:class:`services.local.lookup.DirectoryReader`'s
    shape) through the copy; whatever ``source`` raises is raised unchanged."""

    def __init__(self, cache: DirectoryCache, source: Callable[[], Directory]) -> None:
        self._cache = cache
        self._source = source

    async def get_domain(self, name: str) -> DomainRecord | None:
        try:
            key = domain_key(name)
        except ValueError:
            return await self._source().get_domain(name)  # the store says why
        found = self._cache.get(key)
        if isinstance(found, DomainRecord):
            return found
        since = self._cache.changes
        record = await self._source().get_domain(name)
        if record is not None:
            self._cache.keep(key, record, since)
        return record

    async def get_account(self, domain: str, name: str) -> AccountRecord | None:
        try:
            key = account_key(domain, name)
        except ValueError:
            return await self._source().get_account(domain, name)
        found = self._cache.get(key)
        if isinstance(found, AccountRecord):
            return found
        since = self._cache.changes
        record = await self._source().get_account(domain, name)
        if record is not None:
            self._cache.keep(key, record, since)
        return record
