"""How a component keeps watching the directory bucket ``qmesh_directory`` (hardening #9).

The watch runs in rounds. A round waits until NATS is connected, opens a watch, hands each
entry to the component and tells it once the values present at the start are in (at once for a
watch of new writes only). It ends when the connection has come back since the watch was opened
(a restarted server may have lost the watch's ordered consumer; the epoch is looked at after
every entry and every :data:`EPOCH_CHECK` seconds without one) or when the watch fails; either
is logged as ``directory.watch_failed``. The watch is then stopped, the component told that
the round is over, and the next round begins :data:`RETRY` seconds later.

:class:`DirectoryWatch` is that loop; a component says what it watches (:meth:`_open`) and what
it does with the watch (:meth:`_seen`, :meth:`_loaded`, :meth:`_ended`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy
from nats.js.kv import KV_OP, KeyValue

from qmesh.bus.connection import NatsConnection
from qmesh.contract import subjects
from qmesh.runtime.background import Background

log = logging.getLogger(__name__)

EPOCH_CHECK = 2.0  # seconds: how often an idle watch asks whether the connection came back
RETRY = 1.0  # seconds between a round's end and the next round

Entry = KeyValue.Entry
PREFIX = f"$KV.{subjects.KV_DIRECTORY}."  # the bucket's keys as subjects


class WatchLost(Exception):
    """The connection came back: the watch's ordered consumer may be gone with the server."""


class Watcher(Protocol):
    """What a round reads: nats.py's ``KeyValue.KeyWatcher`` or :class:`NewWrites`. ``updates``
    gives an entry, ``None`` once the values present at the start are in, or raises
    ``TimeoutError`` (nats.py's is one) when none came within ``timeout`` seconds; the timeout
    is its own, as a timeout around it could take an entry with it."""

    async def updates(self, timeout: float) -> Entry | None: ...  # noqa: ASYNC109 (nats.py's)

    async def stop(self) -> None: ...


class DirectoryWatch(Background):
    """The rounds of one watch of ``qmesh_directory``; subclasses say what to watch and do."""

    def __init__(self, conn: NatsConnection) -> None:
        self._conn = conn

    async def _open(self) -> Watcher:
        """Open this round's watch."""
        raise NotImplementedError

    def _seen(self, entry: Entry) -> None:
        """An entry of the watch: a value present at the start, or a change."""

    def _loaded(self) -> None:
        """The values present when the watch was opened are in; changes follow."""

    def _ended(self) -> None:
        """The round is over, however it ended; no watch runs until the next one is loaded."""

    async def _run(self) -> None:
        while True:
            await self._conn.ready.wait()
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("directory.watch_failed", extra={"reason": str(err) or repr(err)})
            finally:
                self._ended()
            await asyncio.sleep(RETRY)

    async def _round(self) -> None:
        epoch = self._conn.epoch
        watcher = await self._open()
        initial = True
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=EPOCH_CHECK)
                except TimeoutError:  # none for a while: only the epoch to look at
                    pass
                else:
                    if entry is not None:
                        self._seen(entry)
                    elif initial:  # the values present at the start are in
                        initial = False
                        self._loaded()
                if self._conn.epoch != epoch:  # read everything again (hardening #9)
                    raise WatchLost("NATS reconnected; watching again")
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()


class NewWrites:
    """A watch of the keys written from now on, headers only: which key changed, not to what.
    Its first update is ``None``, as nothing present at its start is read."""

    def __init__(self) -> None:
        self._updates: asyncio.Queue[Entry | None] = asyncio.Queue()
        self._updates.put_nowait(None)
        self._sub: Subscription | None = None

    @classmethod
    async def open(cls, conn: NatsConnection) -> NewWrites:
        watch = cls()
        watch._sub = await conn.js.subscribe(
            f"{PREFIX}>",
            stream=f"KV_{subjects.KV_DIRECTORY}",
            cb=watch._heard,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            headers_only=True,
            inactive_threshold=300.0,
        )
        return watch

    async def _heard(self, msg: Msg) -> None:
        entry = Entry(
            bucket=subjects.KV_DIRECTORY,
            key=msg.subject.removeprefix(PREFIX),
            value=None,
            revision=None,
            delta=None,
            created=None,
            operation=msg.headers.get(KV_OP) if msg.headers else None,
        )
        self._updates.put_nowait(entry)

    async def updates(self, timeout: float) -> Entry | None:  # noqa: ASYNC109 (Watcher's)
        return await asyncio.wait_for(self._updates.get(), timeout)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
