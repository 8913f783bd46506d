"""The session's queue port on :func:`qmesh.contract.queue.enqueue` (ARCH-01)."""

from __future__ import annotations

from qmesh.bus.base import Publisher
from qmesh.contract.events import Origin
from qmesh.contract.queue import Queued, enqueue
from qmesh.store.base import BlobStore


class Enqueuer:
    def __init__(self, blobs: BlobStore, bus: Publisher) -> None:
        self._blobs = blobs
        self._bus = bus

    async def enqueue(
        self, sender: str, recipients: list[str], body: bytes, origin: Origin, smtputf8: bool
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
