"""Reading and compare-and-set writing of ``msg.<id>`` records in KV ``qmesh_queue``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.errors import Error as NatsError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from qmesh.contract.errors import Temporary
from services.send.state import MessageState, state_key

log = logging.getLogger(__name__)

CAS_TRIES = 20


class StateStore:
    def __init__(self, kv: Callable[[], KeyValue]) -> None:
        self._kv = kv

    async def load(self, qid: str) -> tuple[MessageState, int] | None:
        try:
            entry = await self._kv().get(state_key(qid))
        except KeyNotFoundError:
            return None
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot read queue state: {err}") from err
        assert entry.value is not None and entry.revision is not None
        return MessageState.decode(entry.value), entry.revision

    async def create(self, state: MessageState) -> bool:
        """Write a new record; ``False`` if one exists already (a redelivered todo)."""
        try:
            await self._kv().create(state_key(state.id), state.encode())
            return True
        except KeyWrongLastSequenceError:
            return False
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot write queue state: {err}") from err

    async def update(
        self, qid: str, change: Callable[[MessageState], MessageState | None]
    ) -> tuple[MessageState | None, MessageState | None]:
        """Apply ``change`` with compare-and-set, re-reading on conflict.

        Returns ``(before, after)``; ``after`` is ``None`` when nothing was written (no record,
        or ``change`` returned ``None``).
        """
        for _ in range(CAS_TRIES):
            loaded = await self.load(qid)
            if loaded is None:
                return None, None
            before, revision = loaded
            after = change(before)
            if after is None:
                return before, None
            try:
                await self._kv().update(state_key(qid), after.encode(), last=revision)
                return before, after
            except KeyWrongLastSequenceError:
                await asyncio.sleep(0.005)
            except (NatsError, JsError, OSError, TimeoutError) as err:
                raise Temporary(f"cannot write queue state: {err}") from err
        raise Temporary(f"queue state of {qid} kept changing")

    async def remove(self, qid: str) -> None:
        try:
            await self._kv().purge(state_key(qid))
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot remove queue state: {err}") from err

    async def ids(self) -> list[str]:
        try:
            keys = await self._kv().keys()
        except NoKeysError:
            return []
        except (NatsError, JsError, OSError, TimeoutError) as err:
            raise Temporary(f"cannot list queue state: {err}") from err
        return [k.removeprefix("msg.") for k in keys if k.startswith("msg.")]
