"""IDLE across replicas: one NATS subscription per imapd, woken sessions per account (#13).

``local`` (after a delivery) and every imapd (after APPEND, COPY, STORE, EXPUNGE) publish on
``qmesh.mailbox.<account-key>``. This component subscribes to all accounts once and sets the
events the sessions of that account registered, so an IDLE client hears of new mail within
the NATS round trip, and nothing polls the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol
from weakref import WeakSet

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from qmesh.contract import subjects
from qmesh.mailbox.names import account_key

log = logging.getLogger(__name__)


class Wakeable(Protocol):
    def set(self) -> None: ...


class Announcements:
    """Service component: the subscription, and the sessions waiting per account."""

    def __init__(self, client: Callable[[], Client], ready: asyncio.Event) -> None:
        self._client = client
        self._ready = ready
        self._waiting: defaultdict[str, WeakSet[Wakeable]] = defaultdict(WeakSet)
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    def register(self, domain: str, account: str, event: Wakeable) -> None:
        self._waiting[account_key(domain, account)].add(event)

    async def _handle(self, msg: Msg) -> None:
        key = msg.subject.rpartition(".")[2]
        waiting = self._waiting.get(key)
        if waiting is None:
            return
        for event in list(waiting):
            event.set()
        if not waiting:
            self._waiting.pop(key, None)

    async def _subscribe(self) -> None:
        await self._ready.wait()
        self._sub = await self._client().subscribe(subjects.MAILBOX_ALL, cb=self._handle)
        log.info("imapd.announcements_subscribed")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe())

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def check(self) -> None:
        if self._sub is None:
            raise RuntimeError("not subscribed to mailbox announcements yet")
