"""What every adapter does with a put's arguments before storing anything (ARCH-26).

Metadata is checked the same way in both adapters, so an object that one store accepts the
other accepts too: keys are lower-case ASCII (S3 returns them lower-cased, with the
``x-amz-meta-`` prefix removed), values printable ASCII, 2 KiB in all (S3's limit).

A body is copied into a file in batches through a worker thread, so a message is never held
whole in memory and the event loop never waits on a disk.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import IO

from qmesh.store.base import Body

METADATA_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
METADATA_VALUE_RE = re.compile(r"^[\x20-\x7e]*$")
MAX_METADATA_BYTES = 2048
WRITE_BATCH = 1 << 20


class BadMetadata(ValueError):
    """Object metadata that no adapter will store."""


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Return ``metadata`` as a plain dict if both adapters can store it; raise otherwise."""
    checked = dict(metadata or {})
    total = 0
    for key, value in checked.items():
        if not isinstance(key, str) or not METADATA_KEY_RE.fullmatch(key):
            raise BadMetadata(f"metadata key must be lower-case ASCII [a-z0-9-]: {key!r}")
        if not isinstance(value, str) or not METADATA_VALUE_RE.fullmatch(value):
            raise BadMetadata(f"metadata value of {key!r} must be printable ASCII")
        total += len(key) + len(value)
    if total > MAX_METADATA_BYTES:
        raise BadMetadata(f"metadata larger than {MAX_METADATA_BYTES} bytes")
    return checked


async def write_body(body: Body, out: IO[bytes], *, batch: int = WRITE_BATCH) -> int:
    """Write ``body`` to ``out`` through a worker thread; return the number of bytes."""
    size = 0
    async for data in batches(body, batch=batch):
        await asyncio.to_thread(out.write, data)
        size += len(data)
    return size


async def batches(body: Body, *, batch: int = WRITE_BATCH) -> AsyncIterator[bytes]:
    """``body`` as pieces of at least ``batch`` bytes (the last one may be shorter).

    A body given as bytes is one piece; chunks are gathered so that each piece costs one write.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        yield bytes(body)
        return
    if not isinstance(body, AsyncIterable):
        raise TypeError(f"a body is bytes or an async iterable of bytes, not {type(body)}")
    pending = bytearray()
    async for chunk in body:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"body chunks are bytes, not {type(chunk)}")
        pending += chunk
        if len(pending) >= batch:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)
