"""One owner per message at a time (ARCH-06): an in-process lock and a lease in ``qmesh_leases``.

Everything ``send`` decides about a message after a result or a wake-up — bounce, finish,
start passes — runs while it owns the message, so two handlers in one replica (a result and the
timer) or two replicas never both inject a bounce for the same failures. The lease is a KV key
created only if absent and deleted when the work is done. Its value says when it was taken: an
attend takes well under a second, so a lease older than :data:`STALE` belongs to a replica that
died holding it and is taken over at once (the bucket's TTL would take minutes). Whoever does
not get the lease leaves the message to the owner and looks again shortly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable

from nats.errors import Error as NatsError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.bus.connection import NotConnected
from qmesh.contract.errors import Temporary

log = logging.getLogger(__name__)

KV_ERRORS = (NatsError, JsError, NotConnected, OSError, TimeoutError)
STALE = 30.0  # seconds: far longer than any attend, far shorter than the bucket TTL


class Ownership:
    def __init__(self, kv: Callable[[], KeyValue], clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock
        self._token = secrets.token_hex(8)
        self._locks: dict[str, asyncio.Lock] = {}

    def _value(self) -> bytes:
        return f"{self._token} {self._clock():.3f}".encode()

    async def _take(self, kv: KeyValue, key: str) -> bool:
        """Create the lease, or take over one left by a replica that died holding it."""
        try:
            await kv.create(key, self._value())
            return True
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await kv.get(key)
            taken = float((entry.value or b"").split()[-1])
        except (KeyNotFoundError, ValueError, IndexError):
            return False  # released meanwhile, or unreadable: look again shortly
        if self._clock() - taken < STALE or entry.revision is None:
            return False
        try:
            await kv.update(key, self._value(), last=entry.revision)
        except KeyWrongLastSequenceError:
            return False
        log.warning("send.lease_taken_over", extra={"key": key})
        return True

    @contextlib.asynccontextmanager
    async def hold(self, qid: str) -> AsyncIterator[bool]:
        """Yield True while this worker owns ``qid``, False when another replica does."""
        lock = self._locks.setdefault(qid, asyncio.Lock())
        try:
            async with lock:
                key = f"send.{qid}"
                try:
                    kv = self._kv()
                    owned = await self._take(kv, key)
                except KV_ERRORS as err:
                    raise Temporary(f"cannot take the message lease: {err!r}") from err
                if not owned:
                    yield False
                    return
                try:
                    yield True
                finally:
                    with contextlib.suppress(*KV_ERRORS):
                        await kv.delete(key)
        finally:
            if not lock.locked() and self._locks.get(qid) is lock:
                del self._locks[qid]
