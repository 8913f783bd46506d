"""The directory store: one bucket as a directory tree, for ``qmesh up`` (ARCHITECTURE 5).

Layout under ``root``::

    <bucket>/<key>                 the object: a plain file, its key as its path
    .meta-<bucket>/<key>@<inode>   its metadata as JSON (only if it has any)
    .staging-<bucket>/             objects being written; outside the bucket, so never listed

A put writes the whole body to a staging file and fsyncs it, then makes it visible in one
step: ``os.link`` for a create-only put (atomic, and refused if the key exists: ARCH-10) or
``os.replace``, then fsyncs the directory. A reader sees the old object or the new one, never
part of one (LOCAL-24). Metadata is named after the inode of the object's file and written
before that file becomes visible, so ``stat`` never pairs an object with another version's
metadata. Every key passes :func:`~qmesh.store.keys.check_key` before any I/O, and the
resolved path must stay inside the bucket.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import IO, Any, BinaryIO, TypeVar

from qmesh.store.base import BlobExists, BlobInfo, BlobNotFound, Body, StoreUnavailable
from qmesh.store.keys import BadKey, check_key
from qmesh.store.upload import check_metadata, write_body

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
T = TypeVar("T")


class FileStore:
    """A :class:`~qmesh.store.base.BlobStore` on a local directory."""

    def __init__(self, root: Path, bucket: str) -> None:
        if not BUCKET_RE.fullmatch(bucket):
            raise ValueError(f"bad bucket name {bucket!r}")
        self.root = Path(root).absolute()
        self.bucket = bucket
        self._data = self.root / bucket
        self._meta = self.root / f".meta-{bucket}"
        self._staging = self.root / f".staging-{bucket}"

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r}, {self.bucket!r})"

    async def put(
        self,
        key: str,
        body: Body,
        *,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = False,
    ) -> int:
        check_key(key)
        meta = check_metadata(metadata)
        out, staged = await self._run(self._open_staging)
        try:
            with out:
                await write_body(body, out)
                st = await self._run(_sync, out)
            await self._run(self._commit, key, staged, st.st_ino, meta, create_only)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return st.st_size

    async def get(self, key: str) -> bytes:
        check_key(key)
        return await self._run(self._read, key)

    def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        check_key(key)
        return self._stream(key, chunk_size)

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        f = await self._run(self._open, key)
        try:
            while chunk := await self._run(f.read, chunk_size):
                yield chunk
        finally:
            f.close()

    async def stat(self, key: str) -> BlobInfo:
        check_key(key)
        return await self._run(self._stat, key)

    async def list(self, prefix: str) -> list[BlobInfo]:
        check_key(prefix, prefix=True)
        return await self._run(self._list, prefix)

    async def copy(self, src: str, dst: str) -> None:
        check_key(src)
        check_key(dst)
        await self._run(self._copy, src, dst)

    async def delete(self, key: str) -> None:
        check_key(key)
        await self._run(self._delete, key)

    async def ping(self) -> None:
        await self._run(self._ping)

    # Everything below runs in a worker thread.

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as err:
            raise StoreUnavailable(f"directory store {self.root}: {err}") from err

    def _path(self, key: str) -> Path:
        """The file of ``key``; refuses a path that resolves outside the bucket."""
        path = self._data.joinpath(*key.split("/"))
        inside = os.path.realpath(self._data) + os.sep
        if not os.path.realpath(path).startswith(inside):
            raise BadKey(f"key {key!r} leads outside the bucket")
        return path

    def _meta_path(self, key: str, inode: int) -> Path:
        *parents, name = key.split("/")
        return self._meta.joinpath(*parents, f"{name}@{inode}")

    def _open_staging(self) -> tuple[BinaryIO, Path]:
        self._staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._staging, prefix="put-")
        return os.fdopen(fd, "wb"), Path(name)

    def _commit(
        self, key: str, staged: Path, inode: int, meta: dict[str, str], create_only: bool
    ) -> None:
        """Make the fsynced file ``staged`` (with ``inode``) the object ``key``."""
        target = self._path(key)
        meta_file = self._meta_path(key, inode) if meta else None
        if meta_file is not None:
            self._write_meta(meta_file, meta)
        try:
            old = self._link(key, staged, target, create_only)
        except BaseException:
            if meta_file is not None:
                meta_file.unlink(missing_ok=True)
            raise
        finally:
            staged.unlink(missing_ok=True)  # after os.link; gone already after os.replace
        _fsync_dir(target.parent)
        if old is not None and old != inode:
            self._meta_path(key, old).unlink(missing_ok=True)

    def _link(self, key: str, staged: Path, target: Path, create_only: bool) -> int | None:
        """Make ``staged`` visible as ``target``; return the inode it replaced, if any."""
        for attempt in range(3):
            _makedirs(self._data, target.parent, key)
            if target.is_dir():
                raise BadKey(f"key {key!r} is a prefix of other keys in the directory store")
            try:
                if create_only:
                    os.link(staged, target)
                    return None
                try:
                    old: int | None = os.stat(target).st_ino
                except FileNotFoundError:
                    old = None
                os.replace(staged, target)
                return old
            except FileExistsError as err:
                raise BlobExists(key) from err
            except FileNotFoundError:
                if attempt == 2:  # a concurrent delete keeps pruning the directory
                    raise
        raise AssertionError("unreachable")

    def _write_meta(self, path: Path, meta: dict[str, str]) -> None:
        fd, name = tempfile.mkstemp(dir=self._staging, prefix="meta-")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                json.dump(meta, f, sort_keys=True)
                _sync(f)
            for attempt in range(3):
                _makedirs(self._meta, path.parent, path.name)
                try:
                    os.replace(name, path)
                    break
                except FileNotFoundError:
                    if attempt == 2:  # a concurrent delete keeps pruning the directory
                        raise
        finally:
            Path(name).unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def _absent(self, key: str) -> Exception:
        """A missing file is a missing object, unless the whole bucket is missing."""
        if self._data.is_dir():
            return BlobNotFound(key)
        return StoreUnavailable(f"directory store {self._data}: no such bucket directory")

    def _open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except _MISSING as err:
            raise self._absent(key) from err

    def _read(self, key: str) -> bytes:
        with self._open(key) as f:
            return f.read()

    def _read_meta(self, key: str, inode: int) -> dict[str, str]:
        try:
            loaded = json.loads(self._meta_path(key, inode).read_text(encoding="ascii"))
        except _MISSING:
            return {}
        if not isinstance(loaded, dict):
            return {}
        return {str(k): str(v) for k, v in loaded.items()}

    def _stat(self, key: str) -> BlobInfo:
        try:
            st = os.stat(self._path(key))
        except _MISSING as err:
            raise self._absent(key) from err
        if not S_ISREG(st.st_mode):
            raise BlobNotFound(key)
        return BlobInfo(key, st.st_size, st.st_mtime, self._read_meta(key, st.st_ino))

    def _list(self, prefix: str) -> builtins.list[BlobInfo]:
        try:
            if not S_ISDIR(os.stat(self._data).st_mode):
                raise NotADirectoryError(f"{self._data} is not a directory")
        except FileNotFoundError:
            return []  # nothing was ever stored
        base = prefix.rpartition("/")[0]
        top = self._path(base) if base else self._data
        found: builtins.list[BlobInfo] = []
        self._walk(top, base, prefix, found)
        found.sort(key=lambda info: info.key)
        return found

    def _walk(
        self, directory: Path, stem: str, prefix: str, found: builtins.list[BlobInfo]
    ) -> None:
        try:
            entries = list(os.scandir(directory))
        except _MISSING:
            return  # not there, or deleted while we walked
        for entry in entries:
            key = f"{stem}/{entry.name}" if stem else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                        self._walk(Path(entry.path), key, prefix, found)
                elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                    check_key(key)
                    st = entry.stat(follow_symlinks=False)
                    found.append(BlobInfo(key, st.st_size, st.st_mtime))
            except (FileNotFoundError, BadKey):
                continue  # deleted meanwhile, or a stray file no key can name

    def _copy(self, src: str, dst: str) -> None:
        with self._open(src) as f:
            meta = self._read_meta(src, os.fstat(f.fileno()).st_ino)  # this version's
            out, staged = self._open_staging()
            try:
                with out:
                    shutil.copyfileobj(f, out, 1 << 20)
                    st = _sync(out)
            except BaseException:
                staged.unlink(missing_ok=True)
                raise
        self._commit(dst, staged, st.st_ino, meta, False)

    def _delete(self, key: str) -> None:
        target = self._path(key)
        try:
            st = os.lstat(target)
            if not S_ISREG(st.st_mode):
                return
            os.unlink(target)
        except _MISSING:
            return
        _fsync_dir(target.parent)
        meta_file = self._meta_path(key, st.st_ino)
        meta_file.unlink(missing_ok=True)
        _prune(self._data, target.parent)
        _prune(self._meta, meta_file.parent)

    def _ping(self) -> None:
        self._data.mkdir(parents=True, exist_ok=True)
        out, staged = self._open_staging()
        with out:
            out.write(b"ping")
        staged.unlink()


def _sync(f: IO[Any]) -> os.stat_result:
    """Flush and fsync an open file; return its stat."""
    f.flush()
    os.fsync(f.fileno())
    return os.fstat(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(top: Path, directory: Path, key: str) -> None:
    """Create ``directory`` (``top`` or below it) and make each new entry durable."""
    if not top.is_dir():
        top.mkdir(parents=True, exist_ok=True)
        _fsync_dir(top.parent)
    missing: list[Path] = []
    d = directory
    while d != top and not d.is_dir():
        if d.exists() and not d.is_dir():  # a directory made meanwhile by a concurrent put is fine
            raise BadKey(f"key {key!r} runs through an object of the directory store")
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise BadKey(f"key {key!r} runs through an object of the directory store") from None
        _fsync_dir(d.parent)


def _prune(top: Path, directory: Path) -> None:
    """Remove empty directories from ``directory`` up to, not including, ``top``."""
    d = directory
    while d != top and top in d.parents:
        try:
            d.rmdir()
        except OSError:
            return  # not empty, or gone already
        d = d.parent
