"""Reading and compare-and-set writing of ``msg.<id>`` records in KV ``qmesh_queue``.

The store remembers the last revision of each record that it read or wrote (up to
:data:`REMEMBERED` records), so a write can go out without reading the record back first: the
remembered revision is the compare-and-set guard, and a record that changed meanwhile (another
replica recorded a result, or a flush) fails the write, which is then retried on a fresh read,
exactly as before. Only a write is made from the remembered copy; :meth:`StateStore.load` always
reads KV, and :meth:`StateStore.remembered` is for a caller that knows no other owner wrote the
record since (``send`` under an unbroken lease, :mod:`services.send.owner`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from nats.errors import Error as NatsError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from qmesh.bus.jetstream import allows_marker_ttl, kv_delete
from qmesh.contract.errors import Temporary
from services.send.state import MessageState, state_key

log = logging.getLogger(__name__)

CAS_TRIES = 20
REMEMBERED = 4096  # records kept in memory; the least recently used is forgotten first
# A removed record leaves a marker, which tells a result delivered again after its message
# finished from one that came before its record (``services.send.consumer``). A result comes
# again within the ack wait (30 s) of a handler that died, so an hour is ample; one that comes
# later still finds the body gone and is ignored as well. Without a TTL every message ever
# queued would leave a marker in the bucket for good (at 300 messages a second an hour's are
# about a million, 150 MB).
REMOVED_MARKER_TTL = 3600.0

Loaded = tuple[MessageState, int]


class StateStore:
    def __init__(
        self, kv: Callable[[], KeyValue], *, marker_ttl: float = REMOVED_MARKER_TTL
    ) -> None:
        self._kv = kv
        self._known: OrderedDict[str, Loaded] = OrderedDict()
        self._marker_ttl = marker_ttl
        self._ttl_taken: bool | None = None  # whether the bucket takes the marker's TTL

    def _remember(self, qid: str, state: MessageState, revision: int) -> None:
        known = self._known.get(qid)
        if known is not None and known[1] > revision:
            return  # a later write of ours finished first
        self._known[qid] = (state, revision)
        self._known.move_to_end(qid)
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)

    def forget(self, qid: str) -> None:
        self._known.pop(qid, None)

    def remembered(self, qid: str) -> Loaded | None:
        """The record as this store last read or wrote it, without asking KV."""
        return self._known.get(qid)

    async def load(self, qid: str) -> Loaded | None:
        try:
            entry = await self._kv().get(state_key(qid))
        except KeyNotFoundError:
            self.forget(qid)
            return None
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot read queue state: {err}") from err
        assert entry.value is not None and entry.revision is not None
        state = MessageState.decode(entry.value)
        self._remember(qid, state, entry.revision)
        return state, entry.revision

    async def removed(self, qid: str) -> bool:
        """Whether the record of ``qid`` was removed: its key holds the marker a removal
        leaves, where a record never written leaves nothing (``services.send.consumer``)."""
        try:
            await self._kv().get(state_key(qid))
        except KeyNotFoundError as err:
            return err.op is not None
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot read queue state: {err}") from err
        return False

    async def create(self, state: MessageState) -> bool:
        """Write a new record; ``False`` if one exists already (a redelivered todo)."""
        try:
            revision = await self._kv().create(state_key(state.id), state.encode())
        except KeyWrongLastSequenceError:
            return False
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot write queue state: {err}") from err
        self._remember(state.id, state, revision)
        return True

    async def update(
        self, qid: str, change: Callable[[MessageState], MessageState | None]
    ) -> tuple[MessageState | None, MessageState | None]:
        """Apply ``change`` with compare-and-set, re-reading on conflict.

        The first try starts from the remembered record, if any, and goes out without a read.
        A remembered record may be out of date, so when ``change`` finds nothing to do with it,
        that answer is checked against a fresh read before it is believed.

        Returns ``(before, after)``; ``after`` is ``None`` when nothing was written (no record,
        or ``change`` returned ``None``).
        """
        before, after, _ = await self.update_or_remove(qid, change, None)
        return before, after

    async def update_or_remove(
        self,
        qid: str,
        change: Callable[[MessageState], MessageState | None],
        finished: Callable[[MessageState], bool] | None,
    ) -> tuple[MessageState | None, MessageState | None, bool]:
        """:meth:`update`, but a record that ``change`` leaves ``finished`` is removed instead
        of written, by the same compare-and-set (ARCH-05: the record goes before the body).

        Returns ``(before, after, removed)``.
        """
        loaded = self.remembered(qid)
        for _ in range(CAS_TRIES):
            if loaded is None:
                loaded = await self.load(qid)
                if loaded is None:
                    return None, None, False
                fresh = True
            else:
                fresh = False
            before, revision = loaded
            after = change(before)
            if after is None:
                if fresh:
                    return before, None, False
                loaded = None  # nothing to do, as far as memory knows: ask KV
                continue
            removed = finished is not None and finished(after)
            try:
                if removed:
                    self.forget(qid)
                    await self._remove(qid, revision)
                else:
                    written = await self._kv().update(state_key(qid), after.encode(), last=revision)
            except KeyWrongLastSequenceError:
                self.forget(qid)
                loaded = None
                if fresh:
                    await asyncio.sleep(0.005)
                continue
            except (NatsError, JsError, OSError, TimeoutError) as err:
                self.forget(qid)  # the write may or may not have been stored
                raise Temporary(f"cannot write queue state: {err}") from err
            if not removed:
                self._remember(qid, after, written)
            return before, after, removed
        raise Temporary(f"queue state of {qid} kept changing")

    async def update_at(self, state: MessageState, revision: int) -> bool:
        """Write the record if it is still at ``revision``; False if it changed meanwhile."""
        try:
            written = await self._kv().update(state_key(state.id), state.encode(), last=revision)
        except KeyWrongLastSequenceError:
            self.forget(state.id)
            return False
        except (NatsError, JsError, OSError, TimeoutError) as err:
            self.forget(state.id)  # the write may or may not have been stored
            raise Temporary(f"cannot write queue state: {err}") from err
        self._remember(state.id, state, written)
        return True

    async def remove_at(self, qid: str, revision: int) -> bool:
        """Remove the record if it is still at ``revision``; False if it changed meanwhile."""
        self.forget(qid)
        try:
            await self._remove(qid, revision)
        except KeyWrongLastSequenceError:
            return False
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot remove queue state: {err}") from err
        return True

    async def remove(self, qid: str) -> None:
        self.forget(qid)
        try:
            await self._kv().purge(state_key(qid), msg_ttl=await self._removal_ttl())
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot remove queue state: {err}") from err

    async def _remove(self, qid: str, revision: int) -> None:
        """Purge the record at ``revision``, its marker to go after ``marker_ttl`` seconds."""
        ttl = await self._removal_ttl()
        await kv_delete(self._kv(), state_key(qid), last=revision, purge=True, marker_ttl=ttl)

    async def _removal_ttl(self) -> float | None:
        """The marker's TTL, if the bucket takes one (asked once: a bucket made by an older
        setup on an older nats-server may not)."""
        if self._ttl_taken is None:
            self._ttl_taken = await allows_marker_ttl(self._kv())
        return self._marker_ttl if self._ttl_taken else None

    async def ids(self) -> list[str]:
        try:
            keys = await self._kv().keys()
        except NoKeysError:
            return []
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot list queue state: {err}") from err
        return [k.removeprefix("msg.") for k in keys if k.startswith("msg.")]
