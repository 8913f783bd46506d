"""Queue depth and age for Prometheus: what an operator watches (and the chart's alerts use).

Every ``interval`` seconds: the ``status`` log line (deliveries in flight per channel and their
limits, SEND-40) and, for Prometheus, messages per stage — ``todo`` (not yet preprocessed:
QMESH_TODO), ``queue`` (records in ``qmesh_queue``), ``local`` and ``remote`` (jobs waiting in
their streams), ``shunt`` (events in QMESH_SHUNT, hardening #11) — and the age of the oldest
record, read from its queue id, so no record is loaded.
Only counting: a failure here is logged and tried again, it never touches a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from nats.js.errors import NotFoundError

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
    "shunt": subjects.STREAM_SHUNT,  # events given up on, waiting for a human (hardening #11)
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
        limits: Callable[[], tuple[int, int]] = lambda: (0, 0),
        *,
        interval: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = conn
        self._ids = ids
        self._limits = limits
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
        busy = {}
        for channel in subjects.CHANNELS:
            try:
                consumer = await self._conn.js.consumer_info(
                    subjects.job_stream(channel), subjects.job_consumer(channel)
                )
            except NotFoundError:  # no local/remote has started yet: nothing in flight
                busy[channel] = 0
                continue
            busy[channel] = consumer.num_ack_pending or 0
        local_limit, remote_limit = self._limits()
        log.info(  # SEND-40: qmail's "status: local l/L remote r/R"
            "status",
            extra={
                "local": busy["local"],
                "local_limit": local_limit,
                "remote": busy["remote"],
                "remote_limit": remote_limit,
            },
        )
