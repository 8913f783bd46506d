"""The queued body of a remote job, read from the queue bucket (REMOTE-34, ARCH-22).

:func:`open_message` reads ``mess/<id>`` once before any connection is made, to learn what the
MAIL command needs (the DATA size for SIZE, whether a byte >= 128 occurs for 8BITMIME) and to
fail early with ``Unable to read message.`` when it cannot be read. A small body is kept for
the transaction; a large one is streamed again while it is sent, so it is never held whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from qmesh.contract.errors import Temporary
from qmesh.contract.ids import QueueId
from qmesh.store.base import BlobStore
from qmesh.store.keys import body_key
from services.remote import report
from services.remote.encode import END_OF_DATA, DataEncoder

KEEP_BYTES = 1 << 20  # bodies up to this size are read once and kept


@dataclass(frozen=True, slots=True)
class Message:
    store: BlobStore
    key: str
    size: int  # stored-form bytes (the QMTP length)
    wire_size: int  # DATA content without the final ".", for SIZE
    eightbit: bool
    kept: bytes | None
    prefix: bytes = b""  # header fields added in front (DKIM-Signature), lines ending in LF

    def with_prefix(self, fields: bytes) -> Message:
        """The message with ``fields`` (complete header lines ending in LF) put in front."""
        encoded = DataEncoder().feed(fields)
        return replace(
            self,
            prefix=fields + self.prefix,
            size=self.size + len(fields),
            wire_size=self.wire_size + len(encoded),
        )

    async def content(self, limit: int) -> bytes | None:
        """The stored form whole (without the prefix); None if it is larger than ``limit``."""
        if self.kept is not None:
            return self.kept if len(self.kept) <= limit else None
        if self.size > limit:
            return None
        parts = [chunk async for chunk in self.store.stream(self.key)]
        return b"".join(parts)

    async def head(self, limit: int) -> bytes:
        """About the first ``limit`` bytes of the stored form (without the prefix): enough for
        its header, without reading a large body whole."""
        if self.kept is not None:
            return self.kept[:limit]
        parts: list[bytes] = []
        size = 0
        stream = self.store.stream(self.key)
        try:
            async for chunk in stream:
                parts.append(chunk)
                size += len(chunk)
                if size >= limit:
                    break
        finally:
            close = getattr(stream, "aclose", None)  # the store's response is let go now
            if close is not None:
                await close()
        return b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The prefix and the stored form again, in chunks."""
        if self.prefix:
            yield self.prefix
        if self.kept is not None:
            yield self.kept
            return
        seen = 0
        async for chunk in self.store.stream(self.key):
            seen += len(chunk)
            yield chunk
        if seen != self.size - len(self.prefix):
            raise ValueError(f"body changed size while read ({self.size} then {seen} bytes)")


async def open_message(store: BlobStore, qid: QueueId) -> Message:
    """Scan the body; :class:`Temporary` with ``Unable to read message.`` if it cannot be read."""
    key = body_key(qid)
    encoder = DataEncoder()
    size = wire = 0
    eightbit = False
    kept: list[bytes] | None = []
    try:
        async for chunk in store.stream(key):
            if not chunk:
                continue
            size += len(chunk)
            wire += len(encoder.feed(chunk))
            eightbit = eightbit or not chunk.isascii()
            if kept is not None:
                kept.append(chunk)
                if size > KEEP_BYTES:
                    kept = None
    except Exception as err:  # not found, store down, or a broken stream: all "unreadable"
        raise Temporary(report.MESSAGE_UNREADABLE) from err
    wire += len(encoder.finish()) - len(END_OF_DATA)
    body = b"".join(kept) if kept is not None else None
    return Message(store, key, size, wire, eightbit, body)
