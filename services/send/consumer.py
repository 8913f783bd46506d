"""send's adapters: todo and result handlers, delivery passes, bounces and cleanup.

Every state change is one compare-and-set of the message's record (:mod:`services.send.store`)
computed by the pure functions of :mod:`services.send.plan`. Jobs are published *before* the
record that says they were (their ``Nats-Msg-Id`` makes a repeat harmless), and a todo or a
result is acknowledged only after its record is durable (SEND-01, SEND-30).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from qmesh.bus.base import Publisher
from qmesh.bus.consumer import first_delivery
from qmesh.contract import subjects
from qmesh.contract.errors import QueueFailure, Temporary
from qmesh.contract.events import Job, Origin, Result, Todo
from qmesh.contract.ids import QueueId
from qmesh.contract.queue import enqueue
from qmesh.contract.subjects import Channel
from qmesh.directory.domains import DirectoryDomains
from qmesh.store.base import BlobNotFound, BlobStore, StoreUnavailable
from qmesh.store.keys import body_key
from services.send import metrics
from services.send.bounce import bounce_message, bounce_target
from services.send.config import SendConfig
from services.send.owner import Ownership
from services.send.plan import (
    apply_results,
    due_channels,
    held_channels,
    next_wakeup,
    preprocess,
    start_pass,
)
from services.send.schedule import SWEEP_INTERVAL, Timer
from services.send.state import MessageState
from services.send.store import StateStore

log = logging.getLogger(__name__)

HOLD_RECHECK = SWEEP_INTERVAL  # a held channel (SEND-26) is looked at again after this long
BUSY_RETRY = 2.0  # a message another replica owns is looked at again after this long
# A result that finds no record while the todo's record is being created waits for it this
# often and this long before it is left to be delivered again (throughput #10).
CREATION_TRIES = 10
CREATION_WAIT = 0.05


def arrival(todo: Todo, state: MessageState) -> dict[str, object]:
    """``info_msg``'s fields: qmail's bytes, sender and qp, and the QUEUE-04 origin where qmail
    logged the uid, so this one line tells where a message came from (SEND-40)."""
    origin = todo.origin
    fields: dict[str, object] = {
        "msg_id": todo.id,
        "bytes": todo.size,
        "sender": todo.envelope.sender,
        "qp": todo.qp,
        "origin": origin.kind,
    }
    for name, value in (
        ("client_ip", origin.client_ip),
        ("auth_user", origin.auth_user),
        ("account", origin.account),
    ):
        if value is not None:
            fields[name] = value
    fields["local"] = sum(r.channel == "local" for r in state.recipients)
    fields["remote"] = sum(r.channel == "remote" for r in state.recipients)
    return fields


def finished(state: MessageState) -> bool:
    """Every recipient done and nothing left to bounce: the record may go (CLEAN-02)."""
    return state.complete and not state.bounces


class SendQueue:
    def __init__(
        self,
        *,
        bus: Publisher,
        states: StateStore,
        blobs: BlobStore,
        config: Callable[[], SendConfig],
        domains: DirectoryDomains,
        timer: Timer,
        owner: Ownership,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bus = bus
        self._states = states
        self._blobs = blobs
        self._config = config
        self._domains = domains
        self._timer = timer
        self._owner = owner
        self._clock = clock
        # results waiting for the next settlement of their message, and the task settling it
        self._gathered: dict[str, list[tuple[Result, asyncio.Future[None]]]] = {}
        self._settling: dict[str, asyncio.Task[None]] = {}

    async def on_todo(self, todo: Todo) -> None:
        """SEND-01: write the state, then (by returning) let the todo be acknowledged.

        The record is created with its first passes already started (SEND-21: at once), their
        jobs published just before (throughput #10: one write where there were two), and
        without the lease: a record that does not exist yet is attended by nobody else, and its
        first passes are its only decision (every recipient NOT DONE, nothing to bounce). A
        todo whose record existed already (delivered again) is attended as any message is,
        under the lease; the jobs it published again carry the same msg-ids.
        """
        async with self._owner.locked(todo.id):  # this replica's results wait for the record
            admitted = await self._admit(todo)
        if admitted is False:
            await self.attend(todo.id)

    async def _admit(self, todo: Todo) -> bool | None:
        """Create the record: True if made now, False if it existed, None if there is no message.

        A todo without a body and without a record was finished already (a todo redelivered
        after completion) or is an orphan (requeued from the shunt after the orphan sweep took
        its body, CLEAN-03). Only a repeat can be either: ``enqueue()`` stores the body before
        it publishes the todo (ARCH-01), and the sweep spares a body whose todo is pending. So
        the body is looked for only when the todo is not a first delivery
        (:func:`~qmesh.bus.consumer.first_delivery`): one store request fewer per message
        (throughput #10; a ``HEAD`` on S3). A todo published twice by an ``enqueue()`` whose
        PubAck was lost, after its message was finished, is run again; the delivery ledger
        answers its jobs without delivering (hardening #10).
        """
        if not first_delivery() and not await self._has_body(todo.id):
            if await self._states.load(todo.id) is not None:
                return False
            log.warning("send.todo_without_body", extra={"msg_id": todo.id})
            return None
        config = self._config()
        now = self._clock()
        state = preprocess(todo, config.rules, self._domains.names, now)
        held = held_channels(config.concurrencylocal, config.concurrencyremote)
        started = state
        passes: list[tuple[Channel, list[Job]]] = []
        for channel in due_channels(state, now):
            if channel not in held:  # SEND-26: a held channel starts nothing
                started, jobs = start_pass(started, channel, now, config.queuelifetime)
                passes.append((channel, jobs))
        for channel, jobs in passes:
            await self._publish(channel, jobs)
        if not await self._states.create(started):
            return False
        metrics.MESSAGES.inc()
        log.info("new_msg", extra={"msg_id": todo.id})
        log.info("info_msg", extra=arrival(todo, state))
        for channel, jobs in passes:
            self._started(started, channel, jobs)
        wakeup = next_wakeup(started, now, held, HOLD_RECHECK)
        if wakeup is not None:
            self._timer.wake(todo.id, wakeup)
        return True

    async def _has_body(self, qid: QueueId) -> bool:
        try:
            await self._blobs.stat(body_key(qid))
        except BlobNotFound:
            return False
        return True

    async def on_result(self, result: Result) -> None:
        """SEND-30: record the outcome (then, by returning, let the result be acknowledged).

        Results of one message are settled together (throughput #10, lists #15): a result that
        arrives while a settlement of its message is in flight waits for the next one, which
        applies every result gathered meanwhile in one compare-and-set. This handler returns
        only once the record says its result, and raises what that settlement raised, so a
        write that is lost leaves every result of it to be delivered again.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gathered.setdefault(result.id, []).append((result, waiter))
        if result.id not in self._settling:
            task = asyncio.create_task(self._settle_gathered(result.id))
            self._settling[result.id] = task
        await waiter

    async def _settle_gathered(self, qid: str) -> None:
        """Settle the results gathered for ``qid`` until none are left, one batch at a time."""
        try:
            while gathered := self._gathered.pop(qid, None):
                results = [result for result, _ in gathered]
                try:
                    early = {id(result) for result in await self._settle(qid, results)}
                except Exception as err:
                    for _, waiter in gathered:
                        if not waiter.done():
                            waiter.set_exception(err)
                    continue
                except BaseException:  # cancelled: the handlers end, their events come again
                    for _, waiter in gathered:
                        waiter.cancel()
                    raise
                for result, waiter in gathered:
                    if waiter.done():
                        continue  # its handler was cancelled: the event is delivered again
                    if id(result) in early:  # its pass is being recorded right now
                        waiter.set_exception(
                            Temporary(
                                f"result of attempt {result.attempt} before its pass was recorded"
                            )
                        )
                    else:
                        waiter.set_result(None)
        finally:
            del self._settling[qid]

    async def _settle(self, qid: str, results: list[Result]) -> list[Result]:
        """Record gathered results of one message, then do what it needs now; the early ones.

        As its owner, send records the results and attends the message at once; results that
        leave every recipient done with nothing to bounce remove the record in that same
        compare-and-set instead of writing it (ARCH-05: record first, then the body). When
        another replica owns the message, the results are recorded and that owner, or this
        replica shortly, attends it. Results that leave nothing to decide about the message are
        settled without the lease (:meth:`_settle_quietly`).
        """
        if await self._settle_quietly(qid, results):
            return []
        async with self._owner.hold(qid) as owned:
            if owned:
                after, removed, early = await self._record(qid, results, finish=True)
                if removed and after is not None:
                    self._owner.gone(qid)
                    await self._remove_body(after)
                elif after is not None:
                    await self._attend(qid, trusted=True)  # just written, under the lease
                return early
        after, _, early = await self._record(qid, results, finish=False)
        if after is not None:
            self._timer.wake(qid, self._clock() + BUSY_RETRY)  # another replica has it
        return early

    async def _settle_quietly(self, qid: str, results: list[Result]) -> bool:
        """Record ``results`` without the lease when they leave nothing to decide (throughput
        #10): True if done, False to settle them as usual.

        From the record as this replica remembers it, or else as read now (a result that
        reaches the replica that did not create the record: no lease is taken for it, one write
        less per message with two replicas), only when every result applies to it, and only by
        a compare-and-set on its revision. Results apply only to recipients in flight, whose
        channel starts no pass, and a message with a pass in flight is not bounced, so two
        cases leave no decision to any owner: results after which every pass they belong to is
        still in flight (recorded, as a replica that does not own the message records them),
        and results that finish the message, whose record has nothing to bounce and is removed
        (CLEAN-02, ARCH-05: record first, then body).
        """
        async with self._owner.locked(qid):
            known = self._states.remembered(qid) or await self._states.load(qid)
            if known is None:
                return False  # not created yet, or gone: settled as usual
            state, revision = known
            after, applied, early = apply_results(state, results, self._clock())
            if early or len(applied) != len(results):
                return False
            done = finished(after)
            if not done and not all(after.pass_of(r.channel).inflight for r in results):
                return False
            if done:
                written = await self._states.remove_at(qid, revision)
            else:
                written = await self._states.update_at(after, revision)
            if not written:
                return False  # changed meanwhile: settle as usual, from a fresh read
            for result in results:
                self._recorded(result, after)
            if done:
                await self._remove_body(after)
            return True

    async def _record(
        self, qid: str, results: list[Result], *, finish: bool
    ) -> tuple[MessageState | None, bool, list[Result]]:
        """Apply results in one compare-and-set: the record after them (None: nothing
        changed), whether the message was finished with them, and the early ones."""
        now = self._clock()
        applied: list[Result] = []
        early: list[Result] = []

        def record(state: MessageState) -> MessageState | None:
            nonlocal applied, early
            after, applied, early = apply_results(state, results, now)
            return after if applied else None

        for _ in range(CREATION_TRIES):
            before, after, removed = await self._states.update_or_remove(
                qid, record, finished if finish else None
            )
            if before is not None or not await self._being_created(results[0].id):
                break
            await asyncio.sleep(CREATION_WAIT)
        else:
            return None, False, list(results)
        recorded = {id(result) for result in applied} if after is not None else set()
        left = {id(result) for result in early}
        for result in results:
            if id(result) in recorded:
                self._recorded(result, after)
            elif id(result) not in left:
                log.info(
                    "send.result_ignored",
                    extra={
                        "msg_id": result.id,
                        "rcpt_index": result.rcpt_index,
                        "attempt": result.attempt,
                    },
                )
        return after, removed, early

    async def _being_created(self, qid: QueueId) -> bool:
        """A result found no record: whether the record is being created (``on_todo``
        publishes the first pass's jobs just before it), so the result is early, not a repeat.

        A finished message's record leaves its removal marker (and then its body goes), so a
        key without that marker and a body that exists mean a record yet to come, or one that
        has come since the result looked.
        """
        if await self._states.removed(qid):
            return False
        return await self._has_body(qid)

    def _recorded(self, result: Result, after: MessageState | None) -> None:
        """qmail's ``delivery N: ...`` line and the metrics of one recorded result."""
        assert after is not None
        rcpt = after.recipients[result.rcpt_index]
        event = {
            "delivered": "delivery_success",
            "failed": "delivery_failure",
            "deferred": "delivery_deferral",
        }[result.outcome]
        if result.outcome == "deferred" and rcpt.done:
            event = "delivery_failure"  # turned permanent by the lifetime rule (SEND-24)
        metrics.DELIVERIES.labels(result.channel, result.outcome).inc()
        metrics.ATTEMPTS.labels(result.channel).observe(result.attempt)
        if result.outcome == "deferred" and result.channel == "remote":
            metrics.DEFERRALS.labels(rcpt.address.rpartition("@")[2].lower()).inc()
        log.info(
            event,
            extra={
                "msg_id": result.id,
                "channel": result.channel,
                "rcpt_index": result.rcpt_index,
                "attempt": result.attempt,
                "outcome": result.outcome,
                "report": result.report[:500],
            },
        )

    async def attend(self, qid: str) -> None:
        """Do whatever the message needs now, as its only owner (ARCH-06)."""
        async with self._owner.hold(qid) as owned:
            if owned:
                await self._attend(qid, trusted=self._owner.unbroken(qid))
                return
        if await self._states.load(qid) is None:
            return  # finished: its lease is left to go stale (services.send.owner)
        self._timer.wake(qid, self._clock() + BUSY_RETRY)  # another replica has it now

    async def _attend(self, qid: str, *, trusted: bool) -> None:
        """Bounce, finish, or start due passes.

        ``trusted``: no other owner can have written the record since this replica last did, so
        the copy in memory is used instead of a read. Results and flushes recorded meanwhile by
        others only take recipients out of flight, mark them done or move a next attempt
        earlier; a decision made without them is made again when they are attended, and every
        write below is a compare-and-set on the revision it started from.
        """
        loaded = self._states.remembered(qid) if trusted else None
        if loaded is None:
            loaded = await self._states.load(qid)
        if loaded is None:
            return
        state = loaded[0]
        if state.idle and state.bounces:
            state = await self._bounce(state)
        if finished(state):
            await self._finish(state)
            return
        now = self._clock()
        config = self._config()
        held = held_channels(config.concurrencylocal, config.concurrencyremote)
        for channel in due_channels(state, now):
            if channel not in held:  # SEND-26: a held channel starts nothing
                state = await self._start_pass(state, channel, now)
        wakeup = next_wakeup(state, now, held, HOLD_RECHECK)
        if wakeup is not None:
            self._timer.wake(qid, wakeup)

    async def _start_pass(self, state: MessageState, channel: Channel, now: float) -> MessageState:
        config = self._config()
        planned, jobs = start_pass(state, channel, now, config.queuelifetime)
        if not jobs:
            return state
        await self._publish(channel, jobs)
        attempt = state.pass_of(channel).attempt

        def begin(current: MessageState) -> MessageState | None:
            if current.pass_of(channel).attempt != attempt:
                return None  # another worker started this pass
            return start_pass(current, channel, now, config.queuelifetime)[0]

        _, after = await self._states.update(state.id, begin)
        self._started(state, channel, jobs)
        return after or planned

    async def _publish(self, channel: Channel, jobs: list[Job]) -> None:
        """Jobs go out before the record says their pass started; a repeat has the same
        msg-ids (SEND-21)."""
        for job in jobs:
            await self._bus.publish(subjects.job(channel), job.encode(), msg_id=job.msg_id())

    def _started(self, state: MessageState, channel: Channel, jobs: list[Job]) -> None:
        for job in jobs:
            log.info(
                "starting_delivery",
                extra={
                    "msg_id": state.id,
                    "channel": channel,
                    "rcpt_index": job.rcpt_index,
                    "rcpt": state.recipients[job.rcpt_index].address,
                    "attempt": job.attempt,
                },
            )

    async def _bounce(self, state: MessageState) -> MessageState:
        """BOUNCE-01: one notice for the failures so far, then clear exactly those."""
        config = self._config()
        reported = {f.index for f in state.bounces}
        target = bounce_target(state.sender, config.bounce)
        if target is None:
            log.info("triple_bounce", extra={"msg_id": state.id})
        else:
            try:
                original = await self._blobs.get(body_key(state.id))
            except (BlobNotFound, StoreUnavailable) as err:
                raise Temporary(f"cannot read message for bounce: {err}") from err
            now = self._clock()
            message = bounce_message(
                target=target,
                original_sender=state.sender,
                failures=state.bounces,
                original=original,
                c=config.bounce,
                now=now,
                birth=state.birth,
                message_id=f"{int(now)}.{state.id}.{state.bounced}",
                smtputf8=state.smtputf8,
            )
            try:
                queued = await enqueue(
                    self._blobs,
                    self._bus,
                    sender=target.sender,
                    recipients=[target.recipient],
                    body=message,
                    origin=Origin(kind="bounce"),  # BOUNCE-03
                    smtputf8=state.smtputf8,
                    clock=self._clock,
                )
            except QueueFailure as err:
                raise Temporary(f"cannot queue bounce: {err.text}") from err
            metrics.BOUNCES.labels("double" if target.double else "single").inc()
            log.info(
                "bounce_msg", extra={"msg_id": state.id, "qp": state.qp, "bounce_id": queued.id}
            )

        def clear(current: MessageState) -> MessageState:
            left = tuple(f for f in current.bounces if f.index not in reported)
            return current.model_copy(update={"bounces": left, "bounced": current.bounced + 1})

        _, after = await self._states.update(state.id, clear)
        return after or state

    async def _finish(self, state: MessageState) -> None:
        """ARCH-05, CLEAN-02: state record first, then the body."""
        await self._states.remove(state.id)
        self._owner.gone(state.id)
        await self._remove_body(state)

    async def _remove_body(self, state: MessageState) -> None:
        """The last step of a message, after its record is gone (ARCH-05)."""
        try:
            await self._blobs.delete(body_key(state.id))
        except StoreUnavailable as err:
            log.warning("send.clean_failed", extra={"msg_id": state.id, "reason": err.text})
        metrics.QUEUE_SECONDS.observe(max(0.0, self._clock() - state.birth))
        log.info("end_msg", extra={"msg_id": state.id})
