"""The BlobStore port (ARCHITECTURE section 5).

Both adapters (``s3`` through minio, ``files`` for ``qmesh up``) keep the same keys and behave
the same way; one contract test suite runs against both. Keys are validated by
:func:`qmesh.store.keys.check_key` in every adapter, so no adapter can be talked into a path
outside its bucket.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from qmesh.contract.errors import Temporary

Body = bytes | AsyncIterable[bytes]


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    modified: float  # Unix seconds
    metadata: Mapping[str, str] = field(default_factory=dict)


class BlobNotFound(KeyError):
    """The key does not exist."""


class BlobExists(Exception):
    """A create-only put found the key already there (ARCH-10)."""


class StoreUnavailable(Temporary):
    """The store could not be reached or failed; try again later."""


def check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise ValueError(f"bad range: offset {offset}, length {length}")


class BlobStore(Protocol):
    """One bucket of objects addressed by ``/``-separated keys."""

    async def put(
        self,
        key: str,
        body: Body,
        *,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = False,
    ) -> int:
        """Store ``body`` under ``key`` whole or not at all; return its size.

        With ``create_only`` an existing key raises :class:`BlobExists` and is left untouched.
        Readers never see a partial object. Metadata keys are lower-case ASCII; values ASCII.
        """
        ...

    async def get(self, key: str) -> bytes:
        """The whole object; :class:`BlobNotFound` if absent."""
        ...

    def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """The object in chunks (for bodies that should not be held whole)."""
        ...

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Octets ``offset`` to ``offset + length`` of the object, fewer where it ends sooner
        (none from past its end); reads no more of it than that. :class:`BlobNotFound` if
        absent, ``ValueError`` for a negative offset or length."""
        ...

    async def get_ranges(self, keys: Sequence[str], offset: int, length: int) -> list[bytes | None]:
        """What :meth:`get_range` gives for each of ``keys``, in order, ``None`` for an absent
        one: many small reads (IMAP's header blocks) without a round trip each."""
        ...

    def stream_range(
        self, key: str, offset: int, length: int | None = None, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """What :meth:`get_range` gives (to the end if ``length`` is ``None``), in chunks."""
        ...

    async def stat(self, key: str) -> BlobInfo:
        """Size, time and metadata; :class:`BlobNotFound` if absent."""
        ...

    async def list(self, prefix: str) -> list[BlobInfo]:
        """Every object whose key starts with ``prefix``, sorted by key.

        Listing reads no bodies; ``metadata`` may be empty in list results (S3 lists carry none),
        so anything a lister needs must be in the key or the size.
        """
        ...

    async def list_keys(self, prefix: str) -> builtins.list[str]:
        """The keys :meth:`list` gives, and nothing else: cheaper where sizes cost a read of
        each object (the directory store), the same request where they do not (S3)."""
        ...

    async def copy(self, src: str, dst: str) -> None:
        """Server-side copy of ``src`` to ``dst`` with its metadata."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the bucket can be used now (readiness)."""
        ...
