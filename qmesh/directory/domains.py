"""A watched copy of the directory's domain names (SEND-16, SEND-17).

send and smtpd classify recipients against the set of directory domains on every message;
reading the KV bucket each time would put the directory on the hot path. This component
watches ``domain.*`` in ``qmesh_directory`` and keeps the set current within moments of a
change (SEND-16 allows up to 60 s). Until the first full read it is not ``loaded``: callers
then treat classification as temporarily impossible, never as "remote". After a reconnect or
a failure the watch reads every name again (:mod:`qmesh.directory.watching`); the names read
before stay in use until then.
"""

from __future__ import annotations

import asyncio

from nats.js.kv import KV_DEL, KV_PURGE

from qmesh.bus.connection import NatsConnection
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.directory.watching import DirectoryWatch, Entry, Watcher

PREFIX = "domain."


class DirectoryDomains(DirectoryWatch):
    def __init__(self, conn: NatsConnection) -> None:
        super().__init__(conn)
        self._names: frozenset[str] = frozenset()
        self._reading: set[str] = set()  # this watch's names; published once all are in
        self._initial = True
        self.loaded = asyncio.Event()

    @property
    def names(self) -> frozenset[str]:
        """The domain names with a record; raise Temporary until the first read is complete."""
        if not self.loaded.is_set():
            raise Temporary("Unable to read the directory. (#4.3.0)")
        return self._names

    async def check(self) -> None:
        if not self.loaded.is_set():
            raise Temporary("directory domains not loaded yet")

    async def _open(self) -> Watcher:
        self._reading = set()
        self._initial = True  # the names of the last watch stay in use until these are in
        kv = self._conn.kv(subjects.KV_DIRECTORY)
        return await kv.watch(PREFIX + ">")  # domain names have dots: many tokens

    def _seen(self, entry: Entry) -> None:
        name = entry.key.removeprefix(PREFIX)
        if entry.operation in (KV_DEL, KV_PURGE):
            self._reading.discard(name)
        else:
            self._reading.add(name)
        if not self._initial:
            self._names = frozenset(self._reading)

    def _loaded(self) -> None:
        self._initial = False
        self._names = frozenset(self._reading)
        self.loaded.set()
