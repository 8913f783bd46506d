"""Queue depth and age for Prometheus: what an operator watches (and the chart's alerts use).

Every ``interval`` seconds: messages per stage — ``todo`` (not yet preprocessed: QMESH_TODO),
``queue`` (records in ``qmesh_queue``), ``local`` and ``remote`` (jobs waiting in their
streams) — and the age of the oldest record, read from its queue id, so no record is loaded.
Only counting: a failure here is logged and tried again, it never touches a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from qmesh.bus.connection import NatsConnection
from qmesh.contract import subjects
from qmesh.contract.ids import QUEUE_ID_RE, QueueId, queue_id_birth
from qmesh.runtime.background import Background
from services.send import metrics

log = logging.getLogger(__name__)

STREAMS = {
    "todo": subjects.STREAM_TODO,
    "local": subjects.STREAM_LOCAL,
    "remote": subjects.STREAM_REMOTE,
}


def oldest_age(ids: list[str], now: float) -> float:
    """Seconds since the oldest queue id was made; 0 for an empty queue."""
    births = [queue_id_birth(QueueId(i)) for i in ids if QUEUE_ID_RE.fullmatch(i)]
    return max(0.0, now - min(births)) if births else 0.0


class QueueDepth(Background):
    def __init__(
        self,
        conn: NatsConnection,
        ids: Callable[[], Awaitable[list[str]]],
        *,
        interval: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = conn
        self._ids = ids
        self._interval = interval
        self._clock = clock

    async def _run(self) -> None:
        while True:
            await self._conn.ready.wait()
            try:
                await self.measure()
            except Exception as err:  # counting only: never fatal
                log.warning("send.depth_failed", extra={"reason": str(err) or repr(err)})
            await asyncio.sleep(self._interval)

    async def measure(self) -> None:
        ids = await self._ids()
        metrics.QUEUE_MESSAGES.labels("queue").set(len(ids))
        metrics.QUEUE_OLDEST.labels("queue").set(oldest_age(ids, self._clock()))
        for stage, stream in STREAMS.items():
            info = await self._conn.js.stream_info(stream)
            metrics.QUEUE_MESSAGES.labels(stage).set(info.state.messages)
