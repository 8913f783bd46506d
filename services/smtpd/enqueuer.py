"""The session's queue port on :func:`qmesh.contract.queue.enqueue` (ARCH-01)."""

from __future__ import annotations

from qmesh.bus.connection import NatsConnection, NotConnected
from qmesh.contract.events import Origin
from qmesh.contract.queue import Queued, enqueue
from qmesh.store.base import BlobStore, Body


class Enqueuer:
    def __init__(self, blobs: BlobStore, bus: NatsConnection) -> None:
        self._blobs = blobs
        self._bus = bus

    def available(self) -> bool:
        """NATS is connected; the store's state is learnt from the write itself."""
        try:
            return self._bus.ready.is_set() and self._bus.nc.is_connected
        except NotConnected:
            return False

    async def enqueue(
        self, sender: str, recipients: list[str], body: Body, origin: Origin, smtputf8: bool
    ) -> Queued:
        return await enqueue(
            self._blobs,
            self._bus,
            sender=sender,
            recipients=recipients,
            body=body,
            origin=origin,
            smtputf8=smtputf8,
        )
