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
import logging
import time
from collections.abc import Callable

from pydantic import ValidationError

from qmesh.bus.connection import NatsConnection
from qmesh.bus.responder import Responder
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


class Flusher(Responder):
    def __init__(
        self,
        *,
        conn: NatsConnection,
        states: StateStore,
        timer: Timer,
        config: Callable[[], SendConfig],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(conn, subject=subjects.ADMIN_SEND_FLUSH, group=QUEUE_GROUP)
        self._states = states
        self._timer = timer
        self._config = config
        self._clock = clock

    async def answer(self, request: bytes) -> bytes:
        try:
            FlushRequest.decode(request)
        except ValidationError:
            log.warning("send.flush_invalid_request", extra={"bytes": len(request)})
            return Flushed(due=0, queued=0, error="invalid flush request").encode()
        try:
            answer = await self.flush_all()
        except Temporary as err:
            log.warning("send.flush_failed", extra={"reason": err.text})
            answer = Flushed(due=0, queued=0, error=err.text[:1000])
        except Exception:
            log.exception("send.flush_failed")
            answer = Flushed(due=0, queued=0, error="internal error; see send's log")
        return answer.encode()

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
