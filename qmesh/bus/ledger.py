"""What a delivery service has delivered already: one record per (queue id, recipient index),
so a job published twice is delivered once (hardening #10; ARCH-11 for what cannot be
rewritten under one name: remote transactions, local forwards and programs).

A job can reach ``local`` or ``remote`` twice: a ``send`` that dies between publishing a pass
and recording it leaves the next owner to publish the same jobs again, and JetStream forgets
the ``Nats-Msg-Id`` of an acknowledged work-queue message when the server restarts. Before
delivering, the service *claims* the recipient (a KV create, so only one claim wins); after
it, the final outcome (``delivered`` or ``failed``) replaces the claim and a ``deferred`` one
*releases* it (a record that an attempt was made and ended without a final outcome), so the
next pass claims it again and tries again. A job whose recipient has a final record is
answered from the record, without delivering. A fresh claim of another worker means that
worker is delivering right now: the job is deferred briefly (:class:`Busy`) and then answered
from its record. A worker renews its claim while it delivers (:meth:`Ledger.held`); a claim
older than :data:`CLAIM_STALE` belongs to a worker that died mid-delivery and the recipient is
delivered again, as qmail would after a crash (the one window for a duplicate, ARCH-03).

Every record is a JetStream write, fsynced before its acknowledgement (``sync_interval:
always``), so ``local`` writes only those it needs (throughput #10): it *looks* first
(:meth:`Ledger.look`, a read) and *takes* the claim (:meth:`Ledger.take`) only before a step
that cannot be repeated, a forward or a program. Mailbox objects are rewritten under the same
name (ARCH-11), so a delivery into mailboxes only writes just its final record. Since a
deferral leaves a record, a look that finds none is the recipient's first attempt
(:attr:`Attempt.first`): nothing of an earlier attempt can exist, so ``local`` need not look
for a copy that POP3 already moved. ``remote``'s SMTP transaction cannot be repeated: it
claims (:meth:`Ledger.claim`) before every delivery.

A recipient index belongs to one channel for the life of a message, so ``local`` and
``remote`` share the bucket :data:`~qmesh.contract.subjects.KV_DELIVERIES`, whose TTL outlasts
any message's life in the queue (``queuelifetime``); keys use the queue id and index only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.bus.base import PublishFailed
from qmesh.contract.errors import Temporary
from qmesh.contract.events import Job
from qmesh.contract.outcome import Outcome

log = logging.getLogger(__name__)

CLAIM_STALE = 90.0  # seconds: three ack waits without a renewal; the claimant is gone
RENEW_EVERY = CLAIM_STALE / 3
RETRY_MAX = 2.0  # seconds between tries to record or report a delivery that has happened
KV_ERRORS = (NatsError, JsError, OSError, TimeoutError, ConnectionError)


class Busy(Temporary):
    """Another worker is delivering this recipient right now."""


@dataclass(frozen=True, slots=True)
class Recorded:
    outcome: Outcome
    report: str
    remote_host: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    token: str
    at: float


@dataclass(frozen=True, slots=True)
class Released:
    """An earlier attempt ended without a final outcome (deferred, or stopped by a bug)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """No final outcome is recorded. ``first``: no earlier attempt of the recipient left a
    record, so nothing of one can exist; ``revision``: of the record a claim replaces (None:
    there is none); ``stale``: that record is the claim of a worker that died."""

    first: bool
    revision: int | None
    stale: bool = False


def key_for(job: Job) -> str:
    return f"{job.id}.{job.rcpt_index}"


def claim_value(token: str, now: float) -> bytes:
    return json.dumps({"claim": token, "at": now}).encode()


def final_value(outcome: Outcome, report: str, remote_host: str | None) -> bytes:
    return json.dumps({"outcome": outcome, "report": report, "remote_host": remote_host}).encode()


RELEASED = b'{"released": true}'


def read(value: bytes) -> Recorded | Claim | Released | None:
    """A final record, a claim, a released claim, or None for a value that cannot be read."""
    try:
        data = json.loads(value)
        if data.get("outcome") in ("delivered", "failed"):
            return Recorded(data["outcome"], str(data.get("report", "")), data.get("remote_host"))
        if data.get("released") is True:
            return Released()
        return Claim(str(data.get("claim", "")), float(data["at"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class Ledger:
    def __init__(self, kv: Callable[[], KeyValue], clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock
        self._token = secrets.token_hex(8)

    async def claim(self, job: Job) -> Recorded | None:
        """The recorded final outcome, or None once this worker holds the claim."""
        key = key_for(job)
        try:
            kv = self._kv()
            try:
                await kv.create(key, claim_value(self._token, self._clock()))
                return None
            except KeyWrongLastSequenceError:
                pass
            found = await self.look(job)
            if isinstance(found, Recorded):
                return found
            await self.take(job, found)
        except KV_ERRORS as err:
            raise Temporary(f"cannot read the delivery record: {err!r}") from err
        return None

    async def look(self, job: Job) -> Recorded | Attempt:
        """Read the record without writing: the final outcome, or what a delivery now would
        be (:class:`Attempt`). Raises :class:`Busy` while another worker holds a fresh claim,
        ``Temporary`` when the ledger cannot be read."""
        try:
            kv = self._kv()
            try:
                entry = await kv.get(key_for(job))
            except KeyDeletedError:  # deferred when deferrals still deleted the claim
                return Attempt(first=False, revision=None)
            except KeyNotFoundError:
                return Attempt(first=True, revision=None)
        except KV_ERRORS as err:
            raise Temporary(f"cannot read the delivery record: {err!r}") from err
        found = read(entry.value or b"")
        if isinstance(found, Recorded):
            return found
        if isinstance(found, Claim) and self._clock() - found.at < CLAIM_STALE:
            raise Busy("another worker is delivering this recipient")
        return Attempt(first=False, revision=entry.revision, stale=not isinstance(found, Released))

    async def take(self, job: Job, attempt: Attempt) -> None:
        """Claim the recipient as :meth:`look` found it; :class:`Busy` if the record changed
        since (another worker claimed or settled it), ``Temporary`` if NATS cannot be asked."""
        key = key_for(job)
        value = claim_value(self._token, self._clock())
        try:
            kv = self._kv()
            if attempt.revision is None:
                await kv.create(key, value)
            else:
                await kv.update(key, value, last=attempt.revision)
        except KeyWrongLastSequenceError:
            raise Busy("delivery record changed; trying again") from None
        except KV_ERRORS as err:
            raise Temporary(f"cannot write the delivery record: {err!r}") from err
        if attempt.stale:
            log.warning(
                "delivery.claim_taken_over",
                extra={"msg_id": job.id, "channel": job.channel, "rcpt_index": job.rcpt_index},
            )

    @contextlib.asynccontextmanager
    async def held(self, job: Job) -> AsyncIterator[None]:
        """Renew this worker's claim while the block delivers, however long that takes (a
        program may run for an hour, LOCAL-18), so no other worker takes it over as stale.
        Most deliveries end long before a renewal is due: until then a timer stands in for the
        renewing task, which costs far less than starting and stopping one per delivery."""
        renewing: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            RENEW_EVERY, lambda: renewing.append(asyncio.create_task(self._renew(job)))
        )
        try:
            yield
        finally:
            timer.cancel()
            for task in renewing:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _renew(self, job: Job) -> None:
        key = key_for(job)
        while True:
            try:
                kv = self._kv()
                entry = await kv.get(key)
                found = read(entry.value or b"")
                if not (isinstance(found, Claim) and found.token == self._token):
                    return  # settled, or taken over: nothing of ours to renew
                assert entry.revision is not None
                await kv.update(key, claim_value(self._token, self._clock()), last=entry.revision)
            except (KeyNotFoundError, KeyDeletedError, KeyWrongLastSequenceError):
                return
            except KV_ERRORS as err:  # NATS away for a moment: try at the next turn
                log.warning(
                    "delivery.claim_renew_failed",
                    extra={"msg_id": job.id, "rcpt_index": job.rcpt_index, "reason": repr(err)},
                )
            await asyncio.sleep(RENEW_EVERY)

    async def settle(
        self, job: Job, outcome: Outcome, report: str, remote_host: str | None = None
    ) -> None:
        """Replace the claim by the final outcome, or release it after a deferral."""
        kv = self._kv()
        if outcome == "deferred":
            await kv.put(key_for(job), RELEASED)
        else:
            await kv.put(key_for(job), final_value(outcome, report, remote_host))

    async def release(self, job: Job) -> None:
        """Give a claim back when the delivery stopped without an outcome; a record that
        cannot be written now goes stale by itself."""
        with contextlib.suppress(*KV_ERRORS):
            await self.settle(job, "deferred", "")


async def until_done(step: Callable[[], Awaitable[None]], event: str) -> None:
    """A delivery has happened: record or report it, however long NATS is away."""
    delay = 0.2
    while True:
        try:
            await step()
            return
        except (PublishFailed, *KV_ERRORS) as err:
            log.warning(event, extra={"reason": str(err) or repr(err)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
