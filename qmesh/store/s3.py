"""The S3 store: one bucket of MinIO, SeaweedFS, Ceph RGW or AWS S3 through ``minio``.

minio is blocking, so every call runs in a worker thread. The HTTP pool has short timeouts
and few retries (:func:`s3_client`), so an outage becomes :class:`StoreUnavailable` within
seconds instead of a hang (ARCH-26).

A body in hand of up to 8 MiB (every message) is one ``PUT`` in one worker call. A larger or
streamed body is spooled (1 MiB in memory, then a temporary file) to learn its length. A
create-only put of up to 8 MiB is one ``PUT`` with ``If-None-Match: *``: the server refuses
it atomically if the key exists (ARCH-10). Above that, minio's multipart upload follows a
``HEAD`` check; a writer racing between the two could replace the object, but the only
create-only keys are ``mess/<id>`` with 64 random bits in the id, so no two writers share one.
Either way a put holds at most about 8 MiB of the body in memory, whatever its size (SMTPD-73).
S3 makes an object visible only once it is complete, so readers never see part of one.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import IO, Any, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import MinioException, S3Error

from qmesh.store.base import (
    BlobExists,
    BlobInfo,
    BlobNotFound,
    Body,
    StoreUnavailable,
    check_range,
)
from qmesh.store.keys import check_key
from qmesh.store.upload import batches, check_metadata, write_body

SPOOL_IN_MEMORY = 1 << 20
SINGLE_PUT_MAX = 8 << 20
META_PREFIX = "x-amz-meta-"
T = TypeVar("T")
RANGES_AT_ONCE = 32  # ranged GETs get_ranges keeps in flight


def s3_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    secure: bool = False,
    region: str = "us-east-1",
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
) -> Minio:
    """A minio client whose requests fail within seconds when the server is away."""
    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        maxsize=16,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),  # as minio does
        retries=urllib3.Retry(
            total=3,
            connect=1,
            read=0,  # a PUT that timed out may have been stored: do not send it again
            status=2,
            backoff_factor=0.2,
            status_forcelist=(500, 502, 503, 504),
        ),
    )
    return Minio(endpoint, access_key, secret_key, secure=secure, region=region, http_client=pool)


class S3Store:
    """A :class:`~qmesh.store.base.BlobStore` on one S3 bucket."""

    def __init__(self, client: Minio, bucket: str, *, single_put_max: int = SINGLE_PUT_MAX) -> None:
        self._client = client
        self.bucket = bucket
        self._single_put_max = single_put_max  # larger create-only bodies go multipart

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r})"

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists."""
        if not await self._call(self._client.bucket_exists, self.bucket):
            try:
                await self._call(self._client.make_bucket, self.bucket)
            except StoreUnavailable:
                if not await self._call(self._client.bucket_exists, self.bucket):
                    raise  # not a concurrent creation by another service

    async def put(
        self,
        key: str,
        body: Body,
        *,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = False,
    ) -> int:
        check_key(key)
        headers = {META_PREFIX + k: v for k, v in check_metadata(metadata).items()}
        pieces = aiter(batches(body))
        first = await anext(pieces, b"")
        second = await anext(pieces, None)
        if second is None and len(first) <= self._single_put_max:
            # the whole body in hand (every message): one request in one worker call, not a
            # spool and a worker call for each of its writes, seek and read (throughput #10)
            await self._attempts(
                lambda: self._run(self._put_bytes, key, first, headers, create_only), key
            )
            return len(first)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            size = await write_body(_chained(first, second, pieces), spool)

            async def spooled() -> None:
                await self._run(spool.seek, 0)
                await self._put(key, spool, size, headers, create_only)

            await self._attempts(spooled, key)
            return size

    async def _attempts(self, put: Callable[[], Awaitable[None]], key: str) -> None:
        """``put``, once more after creating the bucket if it was missing."""
        for attempt in (1, 2):
            try:
                await put()
                return
            except S3Error as err:
                if err.code != "NoSuchBucket" or attempt == 2:
                    raise self._translate(err, key) from err
            await self.ensure_bucket()  # SeaweedFS creates it on a put; MinIO does not

    def _put_bytes(self, key: str, data: bytes, headers: dict[str, str], create_only: bool) -> None:
        """In a worker: one ``PUT`` of ``data`` (conditional for a create-only put)."""
        sent: dict[str, str | list[str] | tuple[str]] = dict(headers)
        if create_only:
            sent["Content-Type"] = "application/octet-stream"
            sent["If-None-Match"] = "*"
            # put_object would send If-None-Match as x-amz-meta-if-none-match
            self._client._put_object(self.bucket, key, data, sent)
            return
        self._client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), metadata=sent, num_parallel_uploads=1
        )

    async def _put(
        self, key: str, spool: IO[bytes], size: int, headers: dict[str, str], create_only: bool
    ) -> None:
        """One attempt; S3 errors come back raw so that ``put`` can handle NoSuchBucket."""
        if create_only and size <= self._single_put_max:
            data = await self._run(spool.read)
            await self._run(self._put_bytes, key, data, headers, True)
            return
        if create_only:
            try:
                await self._run(self._client.stat_object, self.bucket, key)
            except S3Error as err:
                if err.code != "NoSuchKey":
                    raise
            else:
                raise BlobExists(key)
        await self._run(
            self._client.put_object,
            self.bucket,
            key,
            spool,
            size,
            metadata=headers,
            num_parallel_uploads=1,
        )

    async def get(self, key: str) -> bytes:
        check_key(key)
        return await self._call(self._read, key, key=key)

    def _read(self, key: str) -> bytes:
        response = self._client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        check_key(key)
        return self._stream(key, chunk_size)

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        response = await self._call(self._client.get_object, self.bucket, key, key=key)
        try:
            while chunk := await self._call(response.read, chunk_size, key=key):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        return b"".join([c async for c in self.stream_range(key, offset, length, max(length, 1))])

    async def get_ranges(self, keys: Sequence[str], offset: int, length: int) -> list[bytes | None]:
        """:meth:`get_range` of each key, :data:`RANGES_AT_ONCE` requests in flight."""
        for key in keys:
            check_key(key)
        check_range(offset, length)

        async def one(key: str) -> bytes | None:
            try:
                return await self.get_range(key, offset, length)
            except BlobNotFound:
                return None

        out: list[bytes | None] = []
        for at in range(0, len(keys), RANGES_AT_ONCE):
            out += await asyncio.gather(*(one(k) for k in keys[at : at + RANGES_AT_ONCE]))
        return out

    def stream_range(
        self, key: str, offset: int, length: int | None = None, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        check_key(key)
        check_range(offset, length)
        return self._stream_range(key, offset, length, chunk_size)

    async def _stream_range(
        self, key: str, offset: int, length: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """One GET with an HTTP Range (RFC 9110 14.2); a range past the end is no octets."""
        if length == 0:
            await self.stat(key)  # nothing to read, but an absent key is still absent
            return
        try:
            response = await self._call(
                self._client.get_object,
                self.bucket,
                key,
                offset=offset,
                length=length or 0,
                key=key,
            )
        except StoreUnavailable as err:
            if _code(err.__cause__) == "InvalidRange":
                await self.stat(key)  # past the end of an object that exists: nothing
                return
            raise
        try:
            while chunk := await self._call(response.read, chunk_size, key=key):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def stat(self, key: str) -> BlobInfo:
        check_key(key)
        obj = await self._call(self._client.stat_object, self.bucket, key, key=key)
        metadata = {
            name.lower().removeprefix(META_PREFIX): value
            for name, value in (obj.metadata or {}).items()
            if name.lower().startswith(META_PREFIX)
        }
        modified = obj.last_modified.timestamp() if obj.last_modified else 0.0
        return BlobInfo(key, obj.size or 0, modified, metadata)

    async def list(self, prefix: str) -> builtins.list[BlobInfo]:
        check_key(prefix, prefix=True)
        try:
            return await self._call(self._list, prefix)
        except StoreUnavailable as err:
            if _code(err.__cause__) == "NoSuchBucket":
                return []  # nothing was ever stored
            raise

    async def list_keys(self, prefix: str) -> builtins.list[str]:
        return [info.key for info in await self.list(prefix)]

    def _list(self, prefix: str) -> builtins.list[BlobInfo]:
        found = [
            BlobInfo(
                obj.object_name,
                obj.size or 0,
                obj.last_modified.timestamp() if obj.last_modified else 0.0,
            )
            for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            if obj.object_name is not None and not obj.is_dir
        ]
        found.sort(key=lambda info: info.key)
        return found

    async def copy(self, src: str, dst: str) -> None:
        check_key(src)
        check_key(dst)
        source = CopySource(self.bucket, src)
        await self._call(self._client.copy_object, self.bucket, dst, source, key=src)

    async def delete(self, key: str) -> None:
        check_key(key)
        try:
            await self._call(self._client.remove_object, self.bucket, key, key=key)
        except BlobNotFound:
            return
        except StoreUnavailable as err:
            if _code(err.__cause__) != "NoSuchBucket":
                raise

    async def ping(self) -> None:
        """The bucket answers; a missing bucket is created (as the first put would)."""
        await self.ensure_bucket()

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` in a worker thread; transport failures become :class:`StoreUnavailable`."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except S3Error:
            raise
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            raise StoreUnavailable(f"object store {self.bucket}: {err}") from err

    async def _call(
        self, fn: Callable[..., T], *args: Any, key: str | None = None, **kwargs: Any
    ) -> T:
        """``_run`` with S3 error codes translated too."""
        try:
            return await self._run(fn, *args, **kwargs)
        except S3Error as err:
            raise self._translate(err, key) from err

    def _translate(self, err: S3Error, key: str | None) -> Exception:
        if key is not None and err.code == "NoSuchKey":
            return BlobNotFound(key)
        if key is not None and err.code == "PreconditionFailed":
            return BlobExists(key)
        return StoreUnavailable(f"object store {self.bucket}: {err.code}: {err.message}")


async def _chained(
    first: bytes, second: bytes | None, rest: AsyncIterable[bytes]
) -> AsyncIterator[bytes]:
    """The body's pieces again, the first two already taken from ``rest``."""
    yield first
    if second is None:
        return
    yield second
    async for piece in rest:
        yield piece


def _code(err: BaseException | None) -> str | None:
    return err.code if isinstance(err, S3Error) else None
