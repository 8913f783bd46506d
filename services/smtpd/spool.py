"""A message on its way in: its stored form held in memory up to a bound, beyond it in a
temporary file, and replayed to ``enqueue()`` in chunks (SMTPD-55, SMTPD-73, QMTP-14).

The verdict on a message (hops, size, a bare line end, its recipients in QMTP) is known only
after its last byte, and ``enqueue()`` must then store it whole or not at all. Holding it here
until then keeps the memory of a session bounded whatever the size: at most
:data:`IN_MEMORY` bytes stay in memory, the rest waits on disk (``TMPDIR``). Every write and
read goes through a worker thread, so the event loop never waits on a disk. A refused message
is dropped here and never reaches the store, so it leaves no blob behind.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator

IN_MEMORY = 1 << 20
CHUNK = 1 << 16


class Spool:
    """Bytes appended with :meth:`write`, read back once or more with :meth:`chunks`."""

    def __init__(self, in_memory: int = IN_MEMORY) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=in_memory)  # noqa: SIM115
        self.size = 0

    async def write(self, data: bytes) -> None:
        if data:
            await asyncio.to_thread(self._file.write, data)
            self.size += len(data)

    def discard(self) -> None:
        """Forget everything written (a message over ``databytes`` is not kept)."""
        if self.size:
            self._file.seek(0)
            self._file.truncate()
            self.size = 0

    async def chunks(self, head: bytes = b"", tail: bytes = b"") -> AsyncIterator[bytes]:
        """``head``, everything written, then ``tail``, in chunks of at most :data:`CHUNK`."""
        if head:
            yield head
        await asyncio.to_thread(self._file.seek, 0)
        left = self.size
        while left > 0:
            chunk = await asyncio.to_thread(self._file.read, min(CHUNK, left))
            if not chunk:
                raise OSError("spooled message shorter than written")
            left -= len(chunk)
            yield chunk
        if tail:
            yield tail

    def close(self) -> None:
        self._file.close()
