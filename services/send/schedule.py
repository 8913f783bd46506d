"""When to look at a message again: a timer for known due times plus a sweep (ARCH-07, -08).

The due times themselves are durable in each message's record; this timer only remembers
them in memory to avoid polling. The sweep re-reads every record at least every
``sweep_interval`` seconds, so nothing is forgotten across restarts or replicas, and an overdue
pass starts at once after a restart (ARCH-07).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable

from qmesh.runtime.background import Background

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0  # ARCH-08 asks for at most 25 minutes


class Timer(Background):
    def __init__(
        self,
        *,
        sweep_interval: float = SWEEP_INTERVAL,
        clock: Callable[[], float] = time.time,
        concurrency: int = 16,
    ) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}
        self._wakeup = asyncio.Event()
        self._sweep_interval = sweep_interval
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._attend: Callable[[str], Awaitable[None]] | None = None
        self._sweep: Callable[[], Awaitable[list[str]]] | None = None

    def bind(
        self, attend: Callable[[str], Awaitable[None]], sweep: Callable[[], Awaitable[list[str]]]
    ) -> None:
        self._attend, self._sweep = attend, sweep

    def wake(self, qid: str, when: float) -> None:
        if self._due.get(qid, float("inf")) <= when:
            return
        self._due[qid] = when
        heapq.heappush(self._heap, (when, qid))
        self._wakeup.set()

    async def _run(self) -> None:
        next_sweep = 0.0
        while True:
            now = self._clock()
            if now >= next_sweep:
                await self._run_sweep()
                next_sweep = self._clock() + self._sweep_interval
            while self._heap and self._heap[0][0] <= self._clock():
                when, qid = heapq.heappop(self._heap)
                if self._due.get(qid) == when:
                    del self._due[qid]
                    await self._slots.acquire()
                    task = asyncio.create_task(self._one(qid))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            until = min([next_sweep] + ([self._heap[0][0]] if self._heap else []))
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(0.0, until - self._clock()))

    async def _run_sweep(self) -> None:
        assert self._sweep is not None
        try:
            ids = await self._sweep()
        except Exception as err:
            log.warning("send.sweep_failed", extra={"reason": str(err) or repr(err)})
            return
        for qid in ids:
            self.wake(qid, self._clock())

    async def _one(self, qid: str) -> None:
        assert self._attend is not None
        try:
            await self._attend(qid)
        except Exception as err:
            log.warning("send.attend_failed", extra={"msg_id": qid, "reason": str(err)})
            self.wake(qid, self._clock() + 120)  # SEND-32: try again in about 2 minutes
        finally:
            self._slots.release()
