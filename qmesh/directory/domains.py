"""A watched copy of the directory's domain names (SEND-16, SEND-17).

send and smtpd classify recipients against the set of directory domains on every message;
reading the KV bucket each time would put the directory on the hot path. This component
watches ``domain.*`` in ``qmesh_directory`` and keeps the set current within moments of a
change (SEND-16 allows up to 60 s). Until the first full read it is not ``loaded``: callers
then treat classification as temporarily impossible, never as "remote".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.errors import TimeoutError as NatsTimeout
from nats.js.kv import KV_DEL, KV_PURGE

from qmesh.bus.connection import NatsConnection
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.runtime.background import Background

log = logging.getLogger(__name__)

PREFIX = "domain."
EPOCH_CHECK = 2.0  # seconds: how often an idle watch asks whether the connection came back


class WatchLost(Exception):
    """The connection came back: the watch's ordered consumer may be gone with the server."""


class DirectoryDomains(Background):
    def __init__(self, conn: NatsConnection) -> None:
        self._conn = conn
        self._names: frozenset[str] = frozenset()
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

    async def _run(self) -> None:
        while True:
            await self._conn.ready.wait()
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("directory.watch_failed", extra={"reason": str(err) or repr(err)})
            await asyncio.sleep(1.0)

    async def _watch(self) -> None:
        kv = self._conn.kv(subjects.KV_DIRECTORY)
        epoch = self._conn.epoch
        watcher = await kv.watch(PREFIX + ">")  # domain names have dots: many tokens
        names: set[str] = set()
        initial = True
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=EPOCH_CHECK)
                except (NatsTimeout, TimeoutError):
                    if self._conn.epoch != epoch:  # read everything again (hardening #9)
                        raise WatchLost("NATS reconnected; watching again") from None
                    continue
                if entry is None:  # end of the initial values
                    if initial:
                        initial = False
                        self._names = frozenset(names)
                        self.loaded.set()
                    continue
                name = entry.key.removeprefix(PREFIX)
                if entry.operation in (KV_DEL, KV_PURGE):
                    names.discard(name)
                else:
                    names.add(name)
                if not initial:
                    self._names = frozenset(names)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()
