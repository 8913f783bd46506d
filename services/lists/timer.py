"""The lists' timer: ezmlm-idx's cron jobs (``ezmlm-get -d`` for quiet lists' digests,
``ezmlm-clean`` for held posts) as a loop in every replica of the lists service.

A round runs every ``QMESH_LISTS_TIMER_SECONDS``. Replicas need not agree on who runs it: what
a round does is taken by a compare-and-set on the list's state in KV ``qmesh_lists`` (the
waiting digest numbers, the held post's key), so with two replicas each digest and each
expiry happens once. A round that fails is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from qmesh.bus.connection import NatsConnection

log = logging.getLogger(__name__)


class Timer:
    def __init__(
        self, conn: NatsConnection, round_: Callable[[], Awaitable[None]], every: float
    ) -> None:
        self._conn = conn
        self._round = round_
        self._every = max(0.1, every)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        await self._conn.ready.wait()
        while True:
            await asyncio.sleep(self._every)
            if not self._conn.connected:
                continue
            try:
                await self._round()
            except Exception:  # a bug or an outage: logged, tried again next round
                log.exception("lists.timer_failed")
