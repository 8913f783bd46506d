"""The port the mailbox model keeps its state in: values with revisions, changed by
compare-and-set (JetStream KV; :class:`NatsVersioned` is the adapter)."""

from __future__ import annotations

from typing import Protocol

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.contract.errors import Temporary


class Conflict(Exception):
    """Someone else changed the value first: read it again and retry."""


class Versioned(Protocol):
    async def read(self, key: str) -> tuple[bytes, int] | None:
        """The value and its revision; ``None`` if absent or deleted."""
        ...

    async def create(self, key: str, value: bytes) -> int:
        """Write only if absent; :class:`Conflict` otherwise."""
        ...

    async def replace(self, key: str, value: bytes, revision: int) -> int:
        """Write only if the value is still at ``revision``; :class:`Conflict` otherwise."""
        ...

    async def remove(self, key: str) -> None: ...


class NatsVersioned:
    """:class:`Versioned` over a JetStream KV bucket (``qmesh_mailbox``)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def read(self, key: str) -> tuple[bytes, int] | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        except Exception as err:
            raise Temporary("Unable to read the mailbox index. (#4.3.0)") from err
        if entry.value is None or entry.revision is None:
            return None
        return entry.value, entry.revision

    async def create(self, key: str, value: bytes) -> int:
        try:
            return await self._kv.create(key, value)
        except KeyWrongLastSequenceError as err:
            raise Conflict(key) from err
        except Exception as err:
            if "wrong last sequence" in str(err):
                raise Conflict(key) from err
            raise Temporary("Unable to write the mailbox index. (#4.3.0)") from err

    async def replace(self, key: str, value: bytes, revision: int) -> int:
        try:
            return await self._kv.update(key, value, last=revision)
        except KeyWrongLastSequenceError as err:
            raise Conflict(key) from err
        except Exception as err:
            if "wrong last sequence" in str(err):
                raise Conflict(key) from err
            raise Temporary("Unable to write the mailbox index. (#4.3.0)") from err

    async def remove(self, key: str) -> None:
        try:
            await self._kv.purge(key)
        except Exception as err:
            raise Temporary("Unable to write the mailbox index. (#4.3.0)") from err
