"""A durable pull consumer as a service component: the one way services take events.

It fetches from a work-queue stream, decodes each payload into a versioned event (refusing
anything malformed, ARCH-22), runs the handler with at most ``concurrency`` in flight, sends
in-progress acks while a handler runs (SEND-34), and acknowledges only after the handler has
returned, i.e. after its effects are durable. A handler that raises leaves the event to be
delivered again: :class:`~qmesh.contract.errors.Temporary` after ``retry_delay``, anything else
(a bug) after a longer delay with the traceback logged. A bug on the ``max_failures``-th
delivery or later shunts the event (hardening #11, Mailman's shunt queue): it is published to
the shunt subject of its origin (:data:`~qmesh.bus.shunt.SHUNT_OF_ORIGIN`) in stream
``QMESH_SHUNT`` with headers naming where it came from, how often it was delivered and the
error class and text, then acknowledged, so it is kept for a
human (``qmesh queue shunted``, ``qmesh queue requeue``) instead of retried for ever.

While NATS is disconnected nothing new is fetched or started, since its outcome could not be
acknowledged or reported; an event fetched just before is left to be delivered again
(hardening #10).

Pulls ask for as many events as there are free handler slots, so one pull request fetches a
batch under load. Acks, naks and in-progress acks are sent without waiting for the server's
answer (JetStream's ack-ack, ``ack_sync``): they leave the client's buffer together with the
other small writes of the moment, and no promise depends on one arriving. An ack that is lost
(the connection drops first) only lets the event be delivered again, which every handler takes
as a repeat: send's record and lease, the delivery ledger of local and remote (hardening #10),
and the shunt's ``Qmesh-Origin-Seq`` that tells a human a second copy is the same event. What
a 250 or a result depends on is a *publish*, and every publish waits for its PubAck
(:class:`qmesh.bus.base.Publisher`).

A handler of single events may ask whether the event in hand is a *first delivery*
(:func:`first_delivery`): JetStream has not delivered it before and no operator put it back
from the shunt. A handler can then leave out a check that only a repeat needs (send's look for
the body of a todo, throughput #10); a repeat, or any doubt, answers ``False``.

With a batch handler (``handle_batch`` and ``batch_key``), the events of one fetch that share a
key are handed over together, at most ``max_batch`` at a time; the group is kept in progress,
acknowledged, or delivered again as a whole. Events of different keys run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from typing import Generic, TypeVar

from nats.aio.msg import Msg
from nats.errors import NotJSMessageError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from qmesh.bus.connection import NatsConnection
from qmesh.bus.provision import ACK_WAIT, bind_consumer
from qmesh.bus.shunt import ERROR, QUEUE_ID, SHUNT_OF_ORIGIN, requeued, shunt_headers
from qmesh.contract.errors import Temporary
from qmesh.contract.events import Event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

BUG_RETRY_DELAY = 60.0
MAX_FAILURES = 5  # deliveries: a bug on the fifth (or a later) one shunts the event
SHUNT_TIMEOUT = 5.0
DISCONNECTED_WAIT = 0.5  # seconds between looks at a lost connection
# How long one pull may wait. nats-py's fetch of a batch returns as soon as the server has
# handed it events, without waiting for the batch to fill (measured with nats-py 2.16: an event
# published to an idle stream reached a waiting fetch within a millisecond, with one replica on
# the consumer or two; tests/integration/test_bus_consumer.py keeps it so). So the wait holds
# nothing back; it bounds how long a request lost with the connection is waited for, and when
# idle it costs two small pull requests a second.
FETCH_WAIT = 0.5


_IN_HAND: ContextVar[Msg | None] = ContextVar("qmesh_event_in_hand", default=None)


def first_delivery() -> bool:
    """Whether the event that the calling handler was given reaches a handler for the first
    time: JetStream has not delivered it before, and ``qmesh queue requeue`` did not put it
    back. ``False`` outside a consumer's handler of single events: the careful answer."""
    msg = _IN_HAND.get()
    if msg is None:
        return False
    try:
        delivered = msg.metadata.num_delivered
    except (NotJSMessageError, ValueError, IndexError):  # not a JetStream delivery: unknown
        return False
    return delivered == 1 and not requeued(msg.headers)


class Slots:
    """Handler slots of one consumer. Its fetch loop takes every free slot at once (as many
    events as it may fetch), and each handler gives its slot back when it ends."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._freed = asyncio.Event()

    async def take_free(self) -> int:
        """Wait until a slot is free, then take every free one: how many."""
        while not self._free:
            self._freed.clear()
            await self._freed.wait()
        taken, self._free = self._free, 0
        return taken

    def release(self, count: int = 1) -> None:
        if count > 0:
            self._free += count
            self._freed.set()


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
        handle_batch: Callable[[list[E]], Awaitable[None]] | None = None,
        batch_key: Callable[[E], Hashable] | None = None,
        max_batch: int = 100,
        max_failures: int = MAX_FAILURES,
        bug_retry_delay: float = BUG_RETRY_DELAY,
        on_shunt: Callable[[], None] = lambda: None,
        fetch_wait: float = FETCH_WAIT,
    ) -> None:
        if (handle_batch is None) != (batch_key is None):
            raise ValueError("handle_batch and batch_key go together")
        self._conn = conn
        self._stream = stream
        self._durable = durable
        self._event = event
        self._handle = handle
        self._concurrency = max(1, concurrency)
        self._max_ack_pending = max_ack_pending or self._concurrency
        self._ack_wait = ack_wait
        self._retry_delay = retry_delay
        self._handle_batch = handle_batch
        self._batch_key = batch_key
        self._max_batch = max(1, max_batch)
        self._max_failures = max(1, max_failures)
        self._bug_retry_delay = bug_retry_delay
        self._on_shunt = on_shunt  # the service's qmesh_<service>_shunted_total
        self._fetch_wait = fetch_wait
        self._clock = time.time
        self._slots = Slots(self._concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        # messages whose handler runs, by id (a Msg is not hashable): the message, and when it
        # was last marked in progress (or its handler started)
        self._working: dict[int, tuple[Msg, float]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run())
        self._keepalive_task = asyncio.create_task(self._keepalive())

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
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task

    async def check(self) -> None:
        if not self.subscribed.is_set():
            raise Temporary(f"consumer {self._durable} not subscribed yet")

    async def _run(self) -> None:
        await self._conn.ready.wait()
        js = self._conn.js
        while True:
            try:
                # made by the setup step with its max_ack_pending (qmesh.bus.provision)
                await bind_consumer(js, self._stream, self._durable)
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
            if not self._conn.connected:  # a fetch would only time out (hardening #9, #10)
                await asyncio.sleep(DISCONNECTED_WAIT)
                continue
            free = await self._slots.take_free()
            try:
                msgs = await sub.fetch(batch=free, timeout=self._fetch_wait)
            except (NatsTimeout, TimeoutError):
                msgs = []
            except Exception as err:
                log.warning(
                    "consumer.fetch_failed",
                    extra={"consumer": self._durable, "reason": str(err) or repr(err)},
                )
                msgs = []
                await asyncio.sleep(1.0)
            self._slots.release(free - len(msgs))
            if self._handle_batch is not None and msgs:
                self._track(self._batches(msgs))
                continue
            for msg in msgs:
                self._track(self._one(msg))

    def _track(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _decode(self, msg: Msg) -> E | None:
        """The event, or None after refusing a malformed payload for good (ARCH-22)."""
        try:
            return self._event.decode(msg.data)
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
            return None

    async def _one(self, msg: Msg) -> None:
        try:
            event = await self._decode(msg)
            if event is not None:
                _IN_HAND.set(msg)  # in this task's context alone, for first_delivery()
                await self._settle([(msg, event)], lambda: self._handle(event))
        except Exception:
            log.exception("consumer.ack_failed", extra={"consumer": self._durable})
        finally:
            self._slots.release()

    async def _batches(self, msgs: list[Msg]) -> None:
        """One fetch in batch mode: decode, group by key, run the groups side by side."""
        assert self._handle_batch is not None and self._batch_key is not None
        groups: dict[Hashable, list[tuple[Msg, E]]] = {}
        batches: list[list[tuple[Msg, E]]] = []
        for msg in msgs:
            try:
                event = await self._decode(msg)
            except Exception:
                log.exception("consumer.ack_failed", extra={"consumer": self._durable})
                event = None
            if event is None:
                self._slots.release()
                continue
            key = self._batch_key(event)
            group = groups.get(key)
            if group is None or len(group) >= self._max_batch:
                group = groups[key] = []
                batches.append(group)
            group.append((msg, event))
        await asyncio.gather(*(self._batch(batch) for batch in batches))

    async def _batch(self, items: list[tuple[Msg, E]]) -> None:
        assert self._handle_batch is not None
        try:
            handle_batch = self._handle_batch
            await self._settle(items, lambda: handle_batch([event for _, event in items]))
        except Exception:
            log.exception("consumer.ack_failed", extra={"consumer": self._durable})
        finally:
            for _ in items:
                self._slots.release()

    async def _settle(
        self, items: list[tuple[Msg, E]], handling: Callable[[], Awaitable[None]]
    ) -> None:
        """Run the handler with every message kept in progress; ack all, or nak all."""
        ids = [getattr(event, "id", None) for _, event in items]
        msg_id = ids[0] if len(ids) == 1 else ids
        if not self._conn.connected:
            # Its outcome could be neither acknowledged nor reported: leave it to be delivered
            # again once the connection is back (hardening #10; REMOTE: no transaction started).
            log.info("consumer.not_started", extra={"consumer": self._durable, "msg_id": msg_id})
            return
        since = time.monotonic()
        for msg, _ in items:
            self._working[id(msg)] = (msg, since)
        try:
            await handling()
        except Temporary as err:
            log.warning(
                "consumer.deferred",
                extra={"consumer": self._durable, "msg_id": msg_id, "reason": err.text},
            )
            await self._each(items, lambda msg: msg.nak(delay=self._retry_delay))
            return
        except Exception as err:
            log.exception(
                "consumer.handler_failed", extra={"consumer": self._durable, "msg_id": msg_id}
            )
            for msg, _ in items:
                await self._failed(msg, err)
            return
        finally:
            for msg, _ in items:
                self._working.pop(id(msg), None)
        await self._each(items, lambda msg: msg.ack())

    async def _each(
        self, items: list[tuple[Msg, E]], settle: Callable[[Msg], Awaitable[None]]
    ) -> None:
        """Ack or nak every message; one that fails is logged and the rest still settled."""
        for msg, _ in items:
            try:
                await settle(msg)
            except Exception:
                log.exception("consumer.ack_failed", extra={"consumer": self._durable})

    async def _failed(self, msg: Msg, err: Exception) -> None:
        """A bug: deliver again later, or shunt after ``max_failures`` deliveries (#11)."""
        try:
            delivered = msg.metadata.num_delivered
            shunt = SHUNT_OF_ORIGIN.get(msg.subject)
            if shunt is None or delivered < self._max_failures:
                await msg.nak(delay=self._bug_retry_delay)
                return
            headers = shunt_headers(msg, delivered, err, self._clock())
            await self._conn.js.publish(shunt, msg.data, timeout=SHUNT_TIMEOUT, headers=headers)
            await msg.ack()
        except Exception:  # not shunted: the event stays and is delivered again
            log.exception("consumer.shunt_failed", extra={"consumer": self._durable})
            return
        self._on_shunt()
        log.error(
            "consumer.shunted",
            extra={
                "consumer": self._durable,
                "msg_id": headers.get(QUEUE_ID),
                "subject": msg.subject,
                "deliveries": delivered,
                "error": headers[ERROR],
            },
        )

    async def _keepalive(self) -> None:
        """SEND-34: every handler running for a third of AckWait or longer gets an in-progress
        ack each third of AckWait, so JetStream does not deliver its event again meanwhile."""
        period = self._ack_wait / 3
        while True:
            await asyncio.sleep(period / 2)
            due = time.monotonic() - period
            for key, (msg, since) in list(self._working.items()):
                if since <= due and key in self._working:
                    self._working[key] = (msg, time.monotonic())
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
