"""The recipient check API (LOCAL-34, SMTPD-45): would delivery find a mailbox?

A core NATS request/reply service on :data:`qmesh.contract.subjects.RCPTCHECK`, in the queue
group ``local`` so the replicas share the questions. It performs the lookups of LOCAL-03,
LOCAL-04 and LOCAL-10 only: directory reads, no loop scan, no execution, no writes. An answer
that cannot be found within 2 s is ``tempfail``, never ``invalid``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from qmesh.bus.connection import NatsConnection
from qmesh.contract import subjects
from qmesh.contract.envelope import split_address
from qmesh.contract.errors import Temporary
from qmesh.contract.events import RcptCheck, RcptVerdict, Verdict
from services.local import metrics
from services.local.lookup import DirectorySource, find_target
from services.local.resolve import has_rule

log = logging.getLogger(__name__)

ANSWER_WITHIN = 2.0  # seconds (LOCAL-34)
QUEUE_GROUP = "local"
MAX_PENDING = 256


async def verdict(directory: DirectorySource, question: RcptCheck) -> Verdict:
    """``valid``, ``invalid`` or ``tempfail`` for one recipient of a namespace."""
    if "@" not in question.recipient:
        return "invalid"
    local, _ = split_address(question.recipient)
    if not local:
        return "valid"  # LOCAL-01: delivered nowhere, successfully
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            t = await find_target(directory(), question.namespace, local)
    except (Temporary, TimeoutError):
        return "tempfail"
    return "valid" if has_rule(t) else "invalid"


class RcptCheckService:
    """The NATS side: one subscription, each question answered in its own task."""

    def __init__(self, conn: NatsConnection, directory: DirectorySource) -> None:
        self._conn = conn
        self._directory = directory
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe())

    async def _subscribe(self) -> None:
        await self._conn.ready.wait()
        self._sub = await self._conn.nc.subscribe(
            subjects.RCPTCHECK, queue=QUEUE_GROUP, cb=self._on_request
        )
        log.info("rcptcheck.subscribed", extra={"subject": subjects.RCPTCHECK})

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=ANSWER_WITHIN + 1)

    async def check(self) -> None:
        if self._sub is None:
            raise Temporary("recipient check not subscribed yet")

    async def _on_request(self, msg: Msg) -> None:
        if len(self._inflight) >= MAX_PENDING:
            await self._reply(msg, "tempfail")
            return
        task = asyncio.create_task(self._answer(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            question = RcptCheck.decode(msg.data)
        except ValidationError:
            log.warning("rcptcheck.invalid_request", extra={"bytes": len(msg.data)})
            await self._reply(msg, "tempfail")
            return
        try:
            answer = await verdict(self._directory, question)
        except Exception:
            log.exception("rcptcheck.failed")
            answer = "tempfail"
        await self._reply(msg, answer)

    async def _reply(self, msg: Msg, answer: Verdict) -> None:
        metrics.RCPTCHECKS.labels(answer).inc()
        if not msg.reply:
            return
        with contextlib.suppress(Exception):
            await msg.respond(RcptVerdict(verdict=answer).encode())
