"""The orphan sweep (CLEAN-03, CLEAN-05, CLEAN-06): send's qmail-clean for bodies never queued.

It runs once at start and then every :data:`~services.send.clean.CLEAN_INTERVAL` seconds.
What it reads, and in which order, is what keeps live data safe (CLEAN-06):

1. the bodies under ``mess/`` older than the orphan age (the rest are never touched);
2. the records in KV ``qmesh_queue``: a body with a record is a queued message;
3. the todo events still pending in ``QMESH_TODO``: a body with one is being queued;
4. each remaining candidate's record once more, just before its body is deleted. A todo
   acknowledged between steps 2 and 3 had its record written first (SEND-01), so this
   re-read finds it.

A delivery job in flight has a record, or its todo is still pending (the first pass's jobs are
published just before the record is created), so steps 2 and 3 cover it. Several send replicas may
sweep at once; deleting an absent body is not an error. Any failure ends the sweep without
deleting anything further; the next sweep tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from qmesh.contract import subjects
from qmesh.contract.events import Todo
from qmesh.contract.ids import QueueId
from qmesh.runtime.background import Background
from qmesh.store.base import BlobStore
from qmesh.store.keys import MESS_PREFIX, body_key
from services.send.clean import CLEAN_INTERVAL, ORPHAN_AGE, old_bodies, orphans
from services.send.store import StateStore

log = logging.getLogger(__name__)

RETRY_AFTER = 120.0  # SEND-32: a failed sweep is tried again in about 2 minutes
TODO_SUFFIX = ".todo"  # Todo.msg_id(): "<id>.todo"


async def pending_todo_ids(js: JetStreamContext) -> set[str]:
    """The queue ids of every todo event not yet acknowledged by send.

    An event that does not parse (a newer version, say) is known by its ``Nats-Msg-Id``.
    """
    try:
        info = await js.stream_info(subjects.STREAM_TODO)
    except NotFoundError:
        return set()
    found: set[str] = set()
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(subjects.STREAM_TODO, seq)
        except NotFoundError:
            continue  # acknowledged meanwhile (a work queue forgets acked events)
        try:
            found.add(Todo.decode(msg.data or b"").id)
        except ValidationError:
            msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            if msg_id.endswith(TODO_SUFFIX):
                found.add(msg_id.removesuffix(TODO_SUFFIX))
    return found


class Cleaner(Background):
    def __init__(
        self,
        *,
        states: StateStore,
        blobs: BlobStore,
        todos: Callable[[], Awaitable[set[str]]],
        clock: Callable[[], float] = time.time,
        interval: float = CLEAN_INTERVAL,
        age: float = ORPHAN_AGE,
    ) -> None:
        self._states = states
        self._blobs = blobs
        self._todos = todos
        self._clock = clock
        self._interval = interval
        self._age = age

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
                pause = self._interval
            except Exception as err:  # the adapter's outermost loop: log, try again later
                log.warning("send.clean_sweep_failed", extra={"reason": str(err) or repr(err)})
                pause = min(self._interval, RETRY_AFTER)
            await asyncio.sleep(pause)

    async def sweep(self) -> list[QueueId]:
        """Remove the orphan bodies older than the orphan age; return their ids."""
        bodies = await self._blobs.list(MESS_PREFIX)
        candidates = old_bodies(bodies, self._clock(), self._age)
        if candidates:
            candidates = orphans(candidates, set(await self._states.ids()))
        if candidates:
            candidates = orphans(candidates, await self._todos())
        removed: list[QueueId] = []
        for qid in candidates:
            if await self._states.load(qid) is not None:
                continue  # preprocessed while we looked (CLEAN-06)
            await self._blobs.delete(body_key(qid))
            log.info("send.orphan_removed", extra={"msg_id": qid})
            removed.append(qid)
        log.info("send.clean_swept", extra={"bodies": len(bodies), "removed": len(removed)})
        return removed
