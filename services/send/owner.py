"""One owner per message at a time (ARCH-06): an in-process lock and a lease in ``qmesh_leases``.

Everything ``send`` decides about a message after a result or a wake-up — bounce, finish,
start passes — runs while it owns the message, so two handlers in one replica (a result and the
timer) or two replicas never both inject a bounce for the same failures. The lease is a KV key
created only if absent and deleted when the work is done. Its value says when it was taken: an
attend takes well under a second, so a lease older than :data:`STALE` belongs to a replica that
died holding it and is taken over at once (the bucket's TTL would take minutes). Whoever does
not get the lease leaves the message to the owner and looks again shortly.

A replica remembers the revision of the delete marker it left when it let a lease go. Taking
that lease again is then one compare-and-set on that revision, and when it succeeds nobody else
held the lease in between: the lease is *unbroken* (:meth:`Ownership.unbroken`), so no other
replica attended the message meanwhile and the record this replica last wrote is the one that
counts (only results and flushes may have been recorded since, each by compare-and-set).
Letting go is itself a compare-and-set on the lease's own revision: a replica whose lease was
taken over (it stalled for :data:`STALE` seconds) deletes nothing of the new owner's.

The lease of a message that was just finished is not let go at all (throughput #10: one durable
write less per message): nobody will attend the message again, a replica that still looks at it
finds no record, and the key goes stale after :data:`STALE` seconds and expires with the
bucket's TTL. This replica remembers the lease's revision as it would a delete marker, so a
late event of the message here takes it back with one compare-and-set.

:meth:`Ownership.locked` is the in-process lock alone, without the lease, for the one step that
needs no lease: a todo, whose record does not exist yet (``services.send.consumer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from nats.errors import Error as NatsError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.bus.connection import NotConnected
from qmesh.bus.jetstream import kv_delete
from qmesh.contract.errors import Temporary

log = logging.getLogger(__name__)

KV_ERRORS = (NatsError, JsError, NotConnected, OSError, TimeoutError)
STALE = 30.0  # seconds: far longer than any attend, far shorter than the bucket TTL
REMEMBERED = 4096  # released leases whose delete marker is remembered


class Ownership:
    def __init__(self, kv: Callable[[], KeyValue], clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock
        self._token = secrets.token_hex(8)
        self._locks: dict[str, asyncio.Lock] = {}
        self._released: OrderedDict[str, int] = OrderedDict()  # key -> our marker or lease
        self._unbroken: set[str] = set()
        self._gone: set[str] = set()  # held now, and the message is finished

    def _value(self) -> bytes:
        return f"{self._token} {self._clock():.3f}".encode()

    def gone(self, qid: str) -> None:
        """The message held now is finished: its lease is left in place, not let go, since
        nobody will attend the message again."""
        self._gone.add(qid)

    def unbroken(self, qid: str) -> bool:
        """Whether this worker holds ``qid`` now and nobody else held it since it last did."""
        return qid in self._unbroken

    async def _take(self, kv: KeyValue, key: str) -> tuple[int, bool] | None:
        """The lease's revision and whether it is unbroken, or None if another replica has it.

        Creates the lease, or takes over one left by a replica that died holding it.
        """
        marker = self._released.pop(key, None)
        if marker is not None:
            try:
                return await kv.update(key, self._value(), last=marker), True
            except KeyWrongLastSequenceError:
                pass  # someone held it since: take it as anyone would
        try:
            return await kv.create(key, self._value()), False
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await kv.get(key)
            taken = float((entry.value or b"").split()[-1])
        except (KeyNotFoundError, ValueError, IndexError):
            return None  # released meanwhile, or unreadable: look again shortly
        if self._clock() - taken < STALE or entry.revision is None:
            return None
        try:
            revision = await kv.update(key, self._value(), last=entry.revision)
        except KeyWrongLastSequenceError:
            return None
        log.warning("send.lease_taken_over", extra={"key": key})
        return revision, False

    async def _release(self, kv: KeyValue, key: str, revision: int, *, gone: bool) -> None:
        if gone:
            self._remember(key, revision)  # left in place: no write (see the module's notes)
            return
        try:
            marker = await kv_delete(kv, key, last=revision)
        except KeyWrongLastSequenceError:
            log.warning("send.lease_lost", extra={"key": key})  # taken over while we worked
            return
        except KV_ERRORS:
            return  # left to go stale
        self._remember(key, marker)

    def _remember(self, key: str, revision: int) -> None:
        self._released[key] = revision
        while len(self._released) > REMEMBERED:
            self._released.popitem(last=False)

    @contextlib.asynccontextmanager
    async def locked(self, qid: str) -> AsyncIterator[None]:
        """This worker's other handlers of ``qid`` wait; other replicas are not asked."""
        lock = self._locks.setdefault(qid, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._locks.get(qid) is lock:
                del self._locks[qid]

    @contextlib.asynccontextmanager
    async def hold(self, qid: str) -> AsyncIterator[bool]:
        """Yield True while this worker owns ``qid``, False when another replica does."""
        async with self.locked(qid):
            key = f"send.{qid}"
            try:
                kv = self._kv()
                taken = await self._take(kv, key)
            except KV_ERRORS as err:
                raise Temporary(f"cannot take the message lease: {err!r}") from err
            if taken is None:
                yield False
                return
            revision, unbroken = taken
            if unbroken:
                self._unbroken.add(qid)
            try:
                yield True
            finally:
                self._unbroken.discard(qid)
                gone = qid in self._gone
                self._gone.discard(qid)
                await self._release(kv, key, revision, gone=gone)
