"""The flush command (SEND-25, qmail's SIGALRM): every waiting pass is due now.

A core NATS request/reply service on :data:`qmesh.contract.subjects.ADMIN_SEND_FLUSH` in the
queue group ``send``, so that with several replicas exactly one takes each request. It moves
the next-attempt time of every record with a compare-and-set (:func:`services.send.plan.flush`),
hands the due messages to the timer, which starts their passes, and answers how many are due.
Another replica's timer may still hold an older due time for the same message: when it fires
the pass is in flight already and nothing happens twice (SEND-22).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from qmesh.bus.connection import NatsConnection
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.contract.events import Flushed, FlushRequest
from services.send.config import SendConfig
from services.send.plan import due_now, flush, held_channels
from services.send.schedule import Timer
from services.send.store import StateStore

log = logging.getLogger(__name__)

QUEUE_GROUP = "send"
PARALLEL = 16  # records changed at once


class Flusher:
    def __init__(
        self,
        *,
        conn: NatsConnection,
        states: StateStore,
        timer: Timer,
        config: Callable[[], SendConfig],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = conn
        self._states = states
        self._timer = timer
        self._config = config
        self._clock = clock
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe())

    async def _subscribe(self) -> None:
        await self._conn.ready.wait()
        self._sub = await self._conn.nc.subscribe(
            subjects.ADMIN_SEND_FLUSH, queue=QUEUE_GROUP, cb=self._on_request
        )
        log.info("send.flush_subscribed", extra={"subject": subjects.ADMIN_SEND_FLUSH})

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)

    async def check(self) -> None:
        if self._sub is None:
            raise Temporary("flush not subscribed yet")

    async def _on_request(self, msg: Msg) -> None:
        task = asyncio.create_task(self._answer(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            FlushRequest.decode(msg.data)
        except ValidationError:
            log.warning("send.flush_invalid_request", extra={"bytes": len(msg.data)})
            answer = Flushed(due=0, queued=0, error="invalid flush request")
        else:
            try:
                answer = await self.flush_all()
            except Temporary as err:
                log.warning("send.flush_failed", extra={"reason": err.text})
                answer = Flushed(due=0, queued=0, error=err.text[:1000])
            except Exception:
                log.exception("send.flush_failed")
                answer = Flushed(due=0, queued=0, error="internal error; see send's log")
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(answer.encode())

    async def flush_all(self) -> Flushed:
        """SEND-25 for every record: next attempts now, then the due passes started."""
        now = self._clock()
        config = self._config()
        held = held_channels(config.concurrencylocal, config.concurrencyremote)
        ids = await self._states.ids()
        slots = asyncio.Semaphore(PARALLEL)

        async def one(qid: str) -> bool:
            async with slots:
                before, after = await self._states.update(qid, lambda s: flush(s, now, held))
            state = after or before
            if state is None or not due_now(state, now, held):
                return False  # finished meanwhile, in flight, or on hold
            self._timer.wake(qid, now)
            return True

        outcomes = await asyncio.gather(*(one(qid) for qid in ids), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        for err in errors:
            if not isinstance(err, Exception):
                raise err  # cancellation
        due = sum(o is True for o in outcomes)
        first = next((str(e) or type(e).__name__ for e in errors), None)
        log.info(
            "send.flushed",
            extra={"due": due, "queued": len(ids), "failed": len(errors), "reason": first},
        )
        return Flushed(
            due=due,
            queued=len(ids),
            failed=len(errors),
            error=None if first is None else first[:1000],
        )
