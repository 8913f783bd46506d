"""Maildrop leases in KV ``qmesh_leases`` (POP3-26).

A lease is a create-only key ``pop3.<domain>/<account>`` (the ``/`` keeps it unambiguous: names
hold dots but never ``/``). The bucket's TTL (:data:`qmesh.bus.provision.LEASE_TTL`) removes a
key that is not rewritten, so a crashed session's lease expires by itself; a live session
rewrites it (compare-and-set on its own revision) every quarter TTL and deletes it at QUIT or
disconnect. A rewrite that finds another revision means the lease was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable

from nats.errors import Error as NatsError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.bus.connection import NotConnected
from qmesh.bus.provision import LEASE_TTL
from qmesh.contract.errors import Temporary
from qmesh.directory.authenticate import Account
from services.pop3d.ports import MaildropInUse

log = logging.getLogger(__name__)

KV_ERRORS = (NatsError, JsError, NotConnected, OSError, TimeoutError)


def lease_key(account: Account) -> str:
    return f"pop3.{account.domain}/{account.name}"


class KvLease:
    def __init__(self, kv: KeyValue, key: str, token: bytes, revision: int, ttl: float) -> None:
        self._kv = kv
        self._key = key
        self._token = token
        self._revision = revision
        self._ttl = ttl
        self._renewed = time.monotonic()
        self._lost = False
        self._lock = asyncio.Lock()
        self._task = asyncio.create_task(self._keep())

    async def _renew(self) -> None:
        async with self._lock:
            if self._lost:
                raise Temporary("maildrop lease lost")
            try:
                self._revision = await self._kv.update(self._key, self._token, last=self._revision)
            except KeyWrongLastSequenceError as err:
                self._lost = True
                log.warning("pop3d.lease_lost", extra={"key": self._key})
                raise Temporary("maildrop lease lost") from err
            except KV_ERRORS as err:
                if time.monotonic() - self._renewed >= self._ttl:
                    self._lost = True
                raise Temporary(f"cannot renew the maildrop lease: {err!r}") from err
            self._renewed = time.monotonic()

    async def _keep(self) -> None:
        while not self._lost:
            await asyncio.sleep(self._ttl / 4)
            with contextlib.suppress(Temporary):
                await self._renew()

    async def confirm(self) -> None:
        await self._renew()

    async def release(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._lost:
            return
        self._lost = True
        try:
            await self._kv.delete(self._key, last=self._revision)
        except KV_ERRORS as err:  # it expires by itself
            log.warning("pop3d.lease_release_failed", extra={"reason": repr(err)})


class KvLeases:
    """:class:`services.pop3d.mailbox.Leases` on the ``qmesh_leases`` bucket."""

    def __init__(self, kv: Callable[[], KeyValue], ttl: float = LEASE_TTL) -> None:
        self._kv = kv
        self._ttl = ttl

    async def acquire(self, account: Account) -> KvLease:
        key = lease_key(account)
        token = secrets.token_hex(16).encode()
        try:
            kv = self._kv()
            revision = await kv.create(key, token)
        except KeyWrongLastSequenceError as err:
            raise MaildropInUse(str(account)) from err
        except KV_ERRORS as err:
            raise Temporary(f"cannot take the maildrop lease: {err!r}") from err
        return KvLease(kv, key, token, revision, self._ttl)
