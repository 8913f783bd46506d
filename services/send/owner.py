"""One owner per message at a time (ARCH-06): an in-process lock and a lease in ``qmesh_leases``.

Everything ``send`` decides about a message after a result or a wake-up — bounce, finish,
start passes — runs while it owns the message, so two handlers in one replica (a result and the
timer) or two replicas never both inject a bounce for the same failures. The lease is a KV key
created only if absent and deleted when the work is done; the bucket's TTL frees the lease of a
replica that died holding it. Whoever does not get the lease leaves the message to the owner
and looks again shortly (the owner may have finished before seeing the newest result).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable

from nats.errors import Error as NatsError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.bus.connection import NotConnected
from qmesh.contract.errors import Temporary

log = logging.getLogger(__name__)

KV_ERRORS = (NatsError, JsError, NotConnected, OSError, TimeoutError)


class Ownership:
    def __init__(self, kv: Callable[[], KeyValue]) -> None:
        self._kv = kv
        self._token = secrets.token_hex(8).encode()
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, qid: str) -> AsyncIterator[bool]:
        """Yield True while this worker owns ``qid``, False when another replica does."""
        lock = self._locks.setdefault(qid, asyncio.Lock())
        try:
            async with lock:
                key = f"send.{qid}"
                try:
                    kv = self._kv()
                    await kv.create(key, self._token)
                except KeyWrongLastSequenceError:
                    yield False
                    return
                except KV_ERRORS as err:
                    raise Temporary(f"cannot take the message lease: {err!r}") from err
                try:
                    yield True
                finally:
                    with contextlib.suppress(*KV_ERRORS):
                        await kv.delete(key)
        finally:
            if not lock.locked() and self._locks.get(qid) is lock:
                del self._locks[qid]
