"""The NATS connection as a service component: streams and KV buckets looked up, never made."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from qmesh.bus.base import PublishFailed
from qmesh.bus.jetstream import JetStreamPublisher, connect
from qmesh.bus.provision import NotProvisioned, await_streams, open_kv
from qmesh.runtime.settings import Settings

log = logging.getLogger(__name__)


class NotConnected(Exception):
    """NATS is not (yet, or no longer) connected."""


class NatsConnection:
    """Connects (retrying), waits for the named streams and KV buckets, then stays connected.

    The setup step (:func:`qmesh.bus.provision.provision`) makes them; until it has, the
    service is not ready and says what is missing (hardening #3).

    With ``background=True`` :meth:`start` returns at once and the connection comes up later;
    smtpd uses this so it can answer ``451`` instead of refusing connections while NATS is down.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        streams: tuple[str, ...] = (),
        kv_buckets: tuple[str, ...] = (),
        background: bool = False,
    ) -> None:
        self._settings = settings
        self._name = name
        self._streams = streams
        self._buckets = kv_buckets
        self._background = background
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._kv: dict[str, KeyValue] = {}
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def _connect(self) -> None:
        nc = await connect(self._settings, self._name)
        js = nc.jetstream()
        delay = 0.5
        while True:
            try:
                await await_streams(js, self._streams)
                for bucket in self._buckets:
                    self._kv[bucket] = await open_kv(js, bucket)
                break
            except NotProvisioned as err:
                log.warning("nats.waiting_for_setup", extra={"reason": err.text})
            except Exception as err:  # JetStream not ready yet (cluster forming, restarts)
                log.warning("nats.lookup_failed", extra={"reason": str(err) or repr(err)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        self._nc, self._js = nc, js
        self.ready.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect())
        if not self._background:
            await self._task

    async def stop(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.drain(), 5)

    async def check(self) -> None:
        """Readiness: connected, streams and buckets found."""
        if self._nc is None or not self.ready.is_set():
            raise NotConnected("not connected yet")
        if not self._nc.is_connected:
            raise NotConnected("connection lost, reconnecting")

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise NotConnected("not connected")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise NotConnected("not connected")
        return self._js

    def kv(self, bucket: str) -> KeyValue:
        if bucket not in self._kv:
            raise NotConnected(f"KV bucket {bucket} not open")
        return self._kv[bucket]

    async def publish(self, subject: str, payload: bytes, *, msg_id: str) -> None:
        """The Publisher port; fails with :class:`PublishFailed` while not connected."""
        if self._js is None:
            raise PublishFailed("not connected to NATS")
        await JetStreamPublisher(self._js).publish(subject, payload, msg_id=msg_id)
