"""A core NATS request/reply service in a queue group (smtpd's recipient check, send's flush).

The replicas of a service share one queue group, so each request is answered once. Every
request runs in its own task; past ``max_pending`` the ``overloaded`` answer goes out at once
instead. On stop the subscription ends and answers under way get ``drain`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from qmesh.bus.connection import NatsConnection
from qmesh.contract.errors import Temporary

log = logging.getLogger(__name__)


class Responder:
    """Subclasses write :meth:`answer`: the request's payload in, the reply's payload out."""

    def __init__(
        self,
        conn: NatsConnection,
        *,
        subject: str,
        group: str,
        drain: float = 10.0,
        max_pending: int | None = None,
        overloaded: Callable[[], bytes] | None = None,
    ) -> None:
        self._conn = conn
        self._subject = subject
        self._group = group
        self._drain = drain
        self._max_pending = max_pending
        self._overloaded = overloaded
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def answer(self, request: bytes) -> bytes:
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe())

    async def _subscribe(self) -> None:
        await self._conn.ready.wait()
        self._sub = await self._conn.nc.subscribe(
            self._subject, queue=self._group, cb=self._on_request
        )
        log.info("responder.subscribed", extra={"subject": self._subject})

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=self._drain)

    async def check(self) -> None:
        if self._sub is None:
            raise Temporary(f"{self._subject} not subscribed yet")

    async def _on_request(self, msg: Msg) -> None:
        limit = self._max_pending
        if limit is not None and self._overloaded and len(self._inflight) >= limit:
            await self._respond(msg, self._overloaded())
            return
        task = asyncio.create_task(self._reply(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _reply(self, msg: Msg) -> None:
        await self._respond(msg, await self.answer(msg.data))

    @staticmethod
    async def _respond(msg: Msg, payload: bytes) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(payload)
