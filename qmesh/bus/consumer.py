"""A durable pull consumer as a service component: the one way services take events.

It fetches from a work-queue stream, decodes each payload into a versioned event (refusing
anything malformed, ARCH-22), runs the handler with at most ``concurrency`` in flight, sends
in-progress acks while a handler runs (SEND-34), and acknowledges only after the handler has
returned, i.e. after its effects are durable. A handler that raises leaves the event to be
delivered again: :class:`~qmesh.contract.errors.Temporary` after ``retry_delay``, anything else
(a bug) after a longer delay with the traceback logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from qmesh.bus.connection import NatsConnection
from qmesh.bus.provision import ACK_WAIT, ensure_consumer
from qmesh.contract.errors import Temporary
from qmesh.contract.events import Event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

BUG_RETRY_DELAY = 60.0


class Consumer(Generic[E]):
    def __init__(
        self,
        conn: NatsConnection,
        *,
        stream: str,
        durable: str,
        event: type[E],
        handle: Callable[[E], Awaitable[None]],
        concurrency: int,
        max_ack_pending: int | None = None,
        ack_wait: float = ACK_WAIT,
        retry_delay: float = 5.0,
    ) -> None:
        self._conn = conn
        self._stream = stream
        self._durable = durable
        self._event = event
        self._handle = handle
        self._concurrency = max(1, concurrency)
        self._max_ack_pending = max_ack_pending or self._concurrency
        self._ack_wait = ack_wait
        self._retry_delay = retry_delay
        self._slots = asyncio.Semaphore(self._concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop fetching; let in-flight handlers finish (unfinished ones are redelivered)."""
        self._stopping.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=20)
        for task in self._inflight:
            task.cancel()

    async def check(self) -> None:
        if not self.subscribed.is_set():
            raise Temporary(f"consumer {self._durable} not subscribed yet")

    async def _run(self) -> None:
        await self._conn.ready.wait()
        js = self._conn.js
        while True:
            try:
                await ensure_consumer(
                    js,
                    self._stream,
                    self._durable,
                    max_ack_pending=self._max_ack_pending,
                    ack_wait=self._ack_wait,
                )
                sub = await js.pull_subscribe_bind(self._durable, self._stream)
                break
            except Exception as err:
                log.warning(
                    "consumer.bind_failed", extra={"consumer": self._durable, "reason": str(err)}
                )
                await asyncio.sleep(1.0)
        self.subscribed.set()
        log.info("consumer.subscribed", extra={"consumer": self._durable})
        while not self._stopping.is_set():
            await self._slots.acquire()
            free = 1
            while free < self._concurrency and not self._slots.locked():
                await self._slots.acquire()
                free += 1
            try:
                msgs = await sub.fetch(batch=free, timeout=5)
            except (NatsTimeout, TimeoutError):
                msgs = []
            except Exception as err:
                log.warning(
                    "consumer.fetch_failed",
                    extra={"consumer": self._durable, "reason": str(err) or repr(err)},
                )
                msgs = []
                await asyncio.sleep(1.0)
            for _ in range(free - len(msgs)):
                self._slots.release()
            for msg in msgs:
                task = asyncio.create_task(self._one(msg))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _one(self, msg: Msg) -> None:
        try:
            try:
                event = self._event.decode(msg.data)
            except ValidationError as err:
                log.error(
                    "consumer.invalid_event",
                    extra={
                        "consumer": self._durable,
                        "bytes": len(msg.data),
                        "reason": str(err)[:500],
                    },
                )
                await msg.term()
                return
            keepalive = asyncio.create_task(self._keepalive(msg))
            try:
                await self._handle(event)
            except Temporary as err:
                log.warning(
                    "consumer.deferred",
                    extra={
                        "consumer": self._durable,
                        "msg_id": getattr(event, "id", None),
                        "reason": err.text,
                    },
                )
                await msg.nak(delay=self._retry_delay)
                return
            except Exception:
                log.exception(
                    "consumer.handler_failed",
                    extra={"consumer": self._durable, "msg_id": getattr(event, "id", None)},
                )
                await msg.nak(delay=BUG_RETRY_DELAY)
                return
            finally:
                keepalive.cancel()
            await msg.ack()
        except Exception:
            log.exception("consumer.ack_failed", extra={"consumer": self._durable})
        finally:
            self._slots.release()

    async def _keepalive(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._ack_wait / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()
