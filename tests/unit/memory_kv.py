"""A folder index's KV bucket for unit tests: a dictionary with revisions that behaves as
JetStream KV's compare-and-set does, and can be told to fail (``broken``)."""

from __future__ import annotations

from qmesh.contract.errors import Temporary
from qmesh.mailbox.versioned import Conflict


class MemoryKV:
    def __init__(self) -> None:
        self.values: dict[str, tuple[bytes, int]] = {}
        self.revision = 0
        self.broken = False

    async def read(self, key: str) -> tuple[bytes, int] | None:
        return self.values.get(key)

    def _write(self, key: str, value: bytes) -> int:
        if self.broken:
            raise Temporary("Unable to write the mailbox index. (#4.3.0)")
        self.revision += 1
        self.values[key] = (value, self.revision)
        return self.revision

    async def create(self, key: str, value: bytes) -> int:
        if key in self.values:
            raise Conflict(key)
        return self._write(key, value)

    async def replace(self, key: str, value: bytes, revision: int) -> int:
        if self.values.get(key, (b"", -1))[1] != revision:
            raise Conflict(key)
        return self._write(key, value)

    async def remove(self, key: str) -> None:
        self.values.pop(key, None)
