"""The directory store: one bucket as a directory tree, for ``qmesh up`` (ARCHITECTURE 5).

Layout under ``root``::

    <bucket>/<key>                 the object: one file, its key as its path
    .staging-<bucket>/put-*        objects being written; outside the bucket, so never listed
    .meta-<bucket>/<key>@<inode>   metadata of objects written by earlier releases (read only)

An object is one file. Its metadata, if it has any, is a small header ahead of the body in that
same file (:mod:`qmesh.store.header`); an object without metadata is its body alone. Every
reader skips the header: ``get`` and ``stream`` return the body, ``stat`` and ``list`` report
the body's size, and ``stat`` and ``list`` read the header only, never the body (POP3-11).
``list_keys`` opens no file at all: the names in the directories are the keys.

A put writes header and body to a staging file and fsyncs it, then makes it visible in one
step: ``os.link`` for a create-only put (atomic, and refused if the key exists: ARCH-10) or
``os.replace``, then fsyncs the directory, once. When ``put`` returns, body and metadata are
on stable storage; a reader sees the old object or the new one, never part of one (LOCAL-24).
A staging file left behind by a killed writer is never an object; the first put of each store
instance removes those untouched for :data:`STALE_STAGING_SECONDS`. A put of at most
:data:`~qmesh.store.upload.WRITE_BATCH` bytes is staged on the event loop (writes into the
page cache); its fsync, link or rename and its directory's fsync are then made on the loop too,
with the other writes of the loop's turn, one directory fsync for all the names made or removed
in that directory (:mod:`qmesh.store.commit`). A delete removes the name on the loop and joins
the same commit. Every other operation that writes or lists is one call into a worker thread; a
larger body is written there, one call per batch.
``stat``, the ``get`` of an object up to :data:`INLINE_READ` bytes and a ``get_range`` of
at most that many read on the event loop itself (throughput #10): a small file from the page
cache takes microseconds, less than a hop to a worker thread and back, and a read stalls the
loop only when the disk must seek.

A file without a header may come from an earlier release, which kept metadata in a sidecar
``.meta-<bucket>/<key>@<inode>``: ``stat`` and ``copy`` read it from there, and replacing or
deleting the object removes it; ``copy`` (POP3's move to ``cur/``) writes the new layout.

Every key passes :func:`~qmesh.store.keys.check_key` before any I/O, and the resolved path must
stay inside the bucket.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import json
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import BinaryIO, TypeVar

from qmesh.store import header
from qmesh.store.base import (
    BlobExists,
    BlobInfo,
    BlobNotFound,
    Body,
    StoreUnavailable,
    check_range,
)
from qmesh.store.commit import GroupCommit
from qmesh.store.keys import BadKey, check_key
from qmesh.store.upload import WRITE_BATCH, batches, check_metadata

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
STALE_STAGING_SECONDS = 36 * 3600  # as a Maildir's tmp/ (POP3-27): no put is that slow
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
T = TypeVar("T")
# Objects up to this size are read on the event loop itself, not in a worker thread: a small
# file in the page cache is read in microseconds, less than the hop to a thread and back costs.
INLINE_READ = 256 * 1024
_HEAD_SLACK = 4096  # octets read beyond a range, for the object's metadata ahead of its body


@dataclass(slots=True)
class _Staged:
    """An object being written: its open staging file and the body bytes written so far."""

    out: BinaryIO
    path: Path
    size: int = 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.size += len(data)

    def discard(self) -> None:
        self.out.close()
        self.path.unlink(missing_ok=True)


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
        self._swept = False
        self._resolved: str | None = None
        self._commits = GroupCommit(_fsync_dir)

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
        pieces = aiter(batches(body))
        first = await anext(pieces, b"")
        last = await anext(pieces, None)
        if last is None:  # the whole body is in hand: one worker call
            return await self._put_whole(key, first, meta, create_only)
        staged = await self._run(self._stage, first, meta)
        try:
            async for piece in pieces:
                await self._run(staged.write, last)
                last = piece
            return await self._run(self._finish, key, staged, last, create_only)
        except BaseException:
            staged.discard()
            raise

    async def get(self, key: str) -> bytes:
        check_key(key)
        small = self._inline(self._read_small, key)
        if small is not None:
            return small
        return await self._run(self._read, key)

    def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        check_key(key)
        return self._stream(key, chunk_size)

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        f, chunk = await self._run(self._open_body, key, chunk_size)
        try:
            while chunk:
                yield chunk
                chunk = await self._run(f.read, chunk_size)
        finally:
            f.close()

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        check_key(key)
        check_range(offset, length)
        if length <= INLINE_READ:  # a short read, from the page cache as a rule: as get does
            return self._inline(self._read_range, key, offset, length)
        return await self._run(self._read_range, key, offset, length)

    async def get_ranges(
        self, keys: Sequence[str], offset: int, length: int
    ) -> builtins.list[bytes | None]:
        for key in keys:
            check_key(key)
        check_range(offset, length)
        return await self._run(self._read_ranges, keys, offset, length)

    def stream_range(
        self, key: str, offset: int, length: int | None = None, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        check_key(key)
        check_range(offset, length)
        return self._stream_range(key, offset, length, chunk_size)

    async def _stream_range(
        self, key: str, offset: int, length: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        f = await self._run(self._open_at, key, offset)
        try:
            left = length
            while left is None or left > 0:
                chunk = await self._run(
                    f.read, chunk_size if left is None else min(left, chunk_size)
                )
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def stat(self, key: str) -> BlobInfo:
        check_key(key)
        return self._inline(self._stat, key)  # reads the header's bytes only

    async def list(self, prefix: str) -> list[BlobInfo]:
        check_key(prefix, prefix=True)
        return await self._run(self._list, prefix)

    async def list_keys(self, prefix: str) -> builtins.list[str]:
        check_key(prefix, prefix=True)
        return await self._run(self._list_keys, prefix)

    async def copy(self, src: str, dst: str) -> None:
        check_key(src)
        check_key(dst)
        await self._run(self._copy, src, dst)

    async def delete(self, key: str) -> None:
        """The file's name removed, and its directory fsynced with the other writes of the
        loop's turn (:mod:`qmesh.store.commit`)."""
        check_key(key)
        removed = self._inline(self._unlink, key)
        if removed is None:
            return
        target, inode = removed
        try:
            await self._commits.commit(lambda: (target.parent, None))
        except OSError as err:
            raise StoreUnavailable(f"directory store {self.root}: {err}") from err
        self._inline(self._tidy, key, target, inode)

    async def ping(self) -> None:
        await self._run(self._ping)

    # Everything below runs in a worker thread, or for short reads on the loop (_inline).

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as err:
            raise StoreUnavailable(f"directory store {self.root}: {err}") from err

    def _inline(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return fn(*args)
        except OSError as err:
            raise StoreUnavailable(f"directory store {self.root}: {err}") from err

    def _path(self, key: str) -> Path:
        """The file of ``key``; refuses a path that resolves outside the bucket."""
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """:meth:`_path` as a string. A key has no ``.`` or ``..`` segment (``check_key``), so
        its path leaves the bucket only through a symbolic link below the bucket directory:
        each existing segment is looked at (``lstat``), and at the first link the whole path
        is resolved and must stay inside, as ``os.path.realpath`` of every key did (at twice
        the cost: it resolves the bucket's own directories every time too)."""
        parts = key.split("/")
        path = os.path.join(self._data, *parts)
        here = str(self._data)
        for part in parts:
            here = os.path.join(here, part)
            try:
                mode = os.lstat(here).st_mode
            except _MISSING:
                break  # nothing further down exists
            if S_ISLNK(mode):
                if not os.path.realpath(path).startswith(self._inside()):
                    raise BadKey(f"key {key!r} leads outside the bucket")
                break
        return path

    def _inside(self) -> str:
        """The bucket directory, resolved once it exists."""
        if self._resolved is not None:
            return self._resolved
        inside = os.path.realpath(self._data) + os.sep
        if os.path.isdir(self._data):
            self._resolved = inside
        return inside

    async def _put_whole(
        self, key: str, body: bytes, meta: dict[str, str], create_only: bool
    ) -> int:
        """A body in hand: staged on the loop (writes into the page cache, microseconds), then
        fsynced, linked and its directory fsynced with the other writes of the loop's turn
        (:mod:`qmesh.store.commit`)."""
        staged = self._inline(self._stage, body, meta)
        try:
            target, inode = self._inline(self._ready, key, staged)
        except BaseException:
            staged.discard()
            raise

        def link() -> tuple[Path, int | None]:
            return target.parent, self._sync_link(key, staged, target, create_only)

        try:
            old = await self._commits.commit(link)
        except OSError as err:
            raise StoreUnavailable(f"directory store {self.root}: {err}") from err
        if old is not None and old != inode:
            self._inline(self._drop_sidecar, key, old)
        return staged.size

    def _ready(self, key: str, staged: _Staged) -> tuple[Path, int]:
        """The staged bytes handed to the kernel and the object's directory made: the object's
        file and the staged file's inode."""
        staged.out.flush()
        inode = os.fstat(staged.out.fileno()).st_ino
        target = self._path(key)
        _makedirs(self._data, target.parent, key)
        if target.is_dir():
            raise BadKey(f"key {key!r} is a prefix of other keys in the directory store")
        return target, inode

    def _sync_link(self, key: str, staged: _Staged, target: Path, create_only: bool) -> int | None:
        """fsync the staged file and make it the object (its directory is fsynced after);
        the inode it replaced, if any."""
        try:
            with staged.out as out:
                os.fsync(out.fileno())
            try:
                old = _swap(staged.path, target, create_only)
            except FileNotFoundError:  # a delete pruned the directory meanwhile: make it again
                old = self._link(key, staged.path, target, create_only)
            except FileExistsError as err:
                raise BlobExists(key) from err
        except BaseException:
            staged.path.unlink(missing_ok=True)
            raise
        if create_only:
            staged.path.unlink()  # the object keeps its own link
        return old

    def _stage(self, first: bytes, meta: dict[str, str]) -> _Staged:
        """A staging file holding the header (if any) and ``first``, the body's first bytes."""
        if not self._swept:
            self._sweep_staging()
        try:
            fd, name = tempfile.mkstemp(dir=self._staging, prefix="put-")
        except FileNotFoundError:
            self._staging.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._staging, prefix="put-")
        staged = _Staged(os.fdopen(fd, "wb"), Path(name))
        try:
            if header.needs_header(meta, first):
                staged.out.write(header.encode(meta))
            staged.write(first)
        except BaseException:
            staged.discard()
            raise
        return staged

    def _finish(self, key: str, staged: _Staged, last: bytes, create_only: bool) -> int:
        """Write ``last``, fsync, and make the staging file the object ``key``."""
        with staged.out as out:
            staged.write(last)
            out.flush()
            os.fsync(out.fileno())
            inode = os.fstat(out.fileno()).st_ino
        self._commit(key, staged.path, inode, create_only)
        return staged.size

    def _commit(self, key: str, staged: Path, inode: int, create_only: bool) -> None:
        """Make the fsynced file ``staged`` (with ``inode``) the object ``key``."""
        target = self._path(key)
        try:
            old = self._link(key, staged, target, create_only)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        if create_only:
            staged.unlink()  # the object keeps its own link
        _fsync_dir(target.parent)
        if old is not None and old != inode:
            self._drop_sidecar(key, old)

    def _link(self, key: str, staged: Path, target: Path, create_only: bool) -> int | None:
        """Make ``staged`` visible as ``target``; return the inode it replaced, if any."""
        for attempt in range(3):
            _makedirs(self._data, target.parent, key)
            if target.is_dir():
                raise BadKey(f"key {key!r} is a prefix of other keys in the directory store")
            try:
                return _swap(staged, target, create_only)
            except FileExistsError as err:
                raise BlobExists(key) from err
            except FileNotFoundError:
                if attempt == 2:  # a concurrent delete keeps pruning the directory
                    raise
        raise AssertionError("unreachable")

    def _sweep_staging(self) -> None:
        """Remove staging files that a killed writer left behind (never visible as objects)."""
        self._swept = True
        before = time.time() - STALE_STAGING_SECONDS
        try:
            entries = list(os.scandir(self._staging))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.name.startswith("put-") and entry.stat().st_mtime < before:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue

    def _legacy_meta_path(self, key: str, inode: int) -> Path:
        *parents, name = key.split("/")
        return self._meta.joinpath(*parents, f"{name}@{inode}")

    def _legacy_meta(self, key: str, inode: int) -> dict[str, str]:
        """Metadata of a file without a header, from an earlier release's sidecar, if any."""
        try:
            text = self._legacy_meta_path(key, inode).read_bytes()
        except _MISSING:
            return {}
        try:
            loaded = json.loads(text.decode("ascii"))
        except ValueError:
            return {}
        if not isinstance(loaded, dict):
            return {}
        return {str(k): str(v) for k, v in loaded.items()}

    def _drop_sidecar(self, key: str, inode: int) -> None:
        """Remove the sidecar an earlier release wrote for this version of ``key``, if any."""
        path = self._legacy_meta_path(key, inode)
        try:
            path.unlink()
        except _MISSING:
            return
        _prune(self._meta, path.parent)

    def _absent(self, key: str) -> Exception:
        """A missing file is a missing object, unless the whole bucket is missing."""
        if self._data.is_dir():
            return BlobNotFound(key)
        return StoreUnavailable(f"directory store {self._data}: no such bucket directory")

    def _open(self, key: str) -> BinaryIO:
        try:
            return open(self._file(key), "rb")  # the caller closes it
        except _MISSING as err:
            raise self._absent(key) from err

    def _read(self, key: str) -> bytes:
        with self._open(key) as f:
            header.read_header(f)
            return f.read()

    def _open_at(self, key: str, offset: int) -> BinaryIO:
        """The object's file positioned ``offset`` octets into its body (a seek, no read)."""
        f = self._open(key)
        try:
            _, start = header.read_header(f)
            f.seek(start + offset)
            return f
        except BaseException:
            f.close()
            raise

    def _read_range(self, key: str, offset: int, length: int) -> bytes:
        with self._open_at(key, offset) as f:
            return f.read(length)

    def _read_ranges(
        self, keys: Sequence[str], offset: int, length: int
    ) -> builtins.list[bytes | None]:
        """:meth:`_read_range` of each key, each directory's path checked once (as
        :meth:`_file` checks a key's) and opened, and its files opened from there, never
        through a link (a file that is one is read by its whole path, checked as ever)."""
        out: builtins.list[bytes | None] = []
        folders: dict[str, int | None] = {}
        try:
            for key in keys:
                parent, _, name = key.rpartition("/")
                if parent not in folders:
                    folders[parent] = self._open_folder(parent) if parent else None
                folder = folders[parent]
                out.append(
                    self._read_range_or_none(key, offset, length)
                    if folder is None
                    else self._read_range_at(folder, name, key, offset, length)
                )
        finally:
            for fd in folders.values():
                if fd is not None:
                    os.close(fd)
        return out

    def _open_folder(self, prefix: str) -> int | None:
        try:
            return os.open(self._file(prefix), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except _MISSING:
            return None  # its keys are read one by one: absent, as their own reads find

    def _read_range_or_none(self, key: str, offset: int, length: int) -> bytes | None:
        try:
            return self._read_range(key, offset, length)
        except BlobNotFound:
            return None

    def _read_range_at(
        self, folder: int, name: str, key: str, offset: int, length: int
    ) -> bytes | None:
        """:meth:`_read_range` of the file ``name`` in the open directory ``folder``: one
        ``pread`` as a rule, taking the object's header (if any) with the asked-for octets."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        except _MISSING:
            return None
        except OSError as err:
            if err.errno == errno.ELOOP:  # a link: by its whole path, as any read of it
                return self._read_range_or_none(key, offset, length)
            raise
        try:
            want = offset + length
            asked = min(want, INLINE_READ) + _HEAD_SLACK
            data = os.pread(fd, asked, 0)
            start = header.header_length(data[: header.PREFIX])
            if start > len(data) == asked:
                data = os.pread(fd, start, 0)  # a header longer than the slack
            if start:
                if len(data) < start:
                    raise header.BadHeader("object file ends inside its header")
                header.parse_metadata(data[header.PREFIX : start])
            if start + want <= len(data) or len(data) < asked:  # all there, or the file ends
                return data[start + offset : start + want]
            return os.pread(fd, length, start + offset)
        except _MISSING:
            return None  # a directory where the object would be: no object, as open finds
        finally:
            os.close(fd)

    def _read_small(self, key: str) -> bytes | None:
        """The body of an object of up to :data:`INLINE_READ` bytes; None for a larger one."""
        with self._open(key) as f:
            if os.fstat(f.fileno()).st_size > INLINE_READ:
                return None
            header.read_header(f)
            return f.read()

    def _open_body(self, key: str, chunk_size: int) -> tuple[BinaryIO, bytes]:
        """The object's file positioned at its body, and the body's first chunk."""
        f = self._open(key)
        try:
            header.read_header(f)
            return f, f.read(chunk_size)
        except BaseException:
            f.close()
            raise

    def _open_meta(self, key: str) -> tuple[BinaryIO, dict[str, str], int]:
        """The object's file at its body, its metadata and its body size; reads no body."""
        f = self._open(key)
        try:
            meta, offset = header.read_header(f)
            st = os.fstat(f.fileno())
            if meta is None:
                meta = self._legacy_meta(key, st.st_ino)
            return f, meta, st.st_size - offset
        except BaseException:
            f.close()
            raise

    def _stat(self, key: str) -> BlobInfo:
        f, meta, size = self._open_meta(key)
        with f:
            modified = os.fstat(f.fileno()).st_mtime
        return BlobInfo(key, size, modified, meta)

    def _list(self, prefix: str) -> builtins.list[BlobInfo]:
        found: builtins.list[BlobInfo] = []
        for key, path in self._files(prefix):
            try:
                with open(path, "rb") as f:
                    skip = header.header_length(f.read(header.PREFIX))
                    st = os.fstat(f.fileno())
            except FileNotFoundError:
                continue  # deleted meanwhile
            found.append(BlobInfo(key, st.st_size - skip, st.st_mtime))
        return found

    def _list_keys(self, prefix: str) -> builtins.list[str]:
        return [key for key, _ in self._files(prefix)]

    def _files(self, prefix: str) -> builtins.list[tuple[str, str]]:
        """(key, path) of every object file under ``prefix``, sorted by key; opens none."""
        try:
            if not S_ISDIR(os.stat(self._data).st_mode):
                raise NotADirectoryError(f"{self._data} is not a directory")
        except FileNotFoundError:
            return []  # nothing was ever stored
        base = prefix.rpartition("/")[0]
        top = self._path(base) if base else self._data
        found: builtins.list[tuple[str, str]] = []
        self._walk(top, base, prefix, found)
        found.sort()
        return found

    def _walk(
        self, directory: Path, stem: str, prefix: str, found: builtins.list[tuple[str, str]]
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
                    found.append((key, entry.path))
            except (FileNotFoundError, BadKey):
                continue  # deleted meanwhile, or a stray file no key can name

    def _copy(self, src: str, dst: str) -> None:
        f, meta, _ = self._open_meta(src)  # this version's metadata
        with f:
            staged = self._stage(f.read(WRITE_BATCH), meta)
            try:
                while piece := f.read(WRITE_BATCH):
                    staged.write(piece)
                self._finish(dst, staged, b"", False)
            except BaseException:
                staged.discard()
                raise

    def _unlink(self, key: str) -> tuple[Path, int] | None:
        """Remove the object's file (its directory not yet fsynced): the file and its inode,
        or None when there was no object."""
        target = self._path(key)
        try:
            st = os.lstat(target)
            if not S_ISREG(st.st_mode):
                return None
            os.unlink(target)
        except _MISSING:
            return None
        return target, st.st_ino

    def _tidy(self, key: str, target: Path, inode: int) -> None:
        """After a delete: an earlier release's sidecar, and directories left empty."""
        self._drop_sidecar(key, inode)
        _prune(self._data, target.parent)

    def _ping(self) -> None:
        self._data.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._staging, prefix="ping-")
        try:
            os.write(fd, b"ping")
        finally:
            os.close(fd)
            os.unlink(name)


def _swap(staged: Path, target: Path, create_only: bool) -> int | None:
    """Make ``staged`` visible as ``target``: a link that fails if ``target`` exists, or a
    rename over it; the inode it replaced, if any."""
    if create_only:
        os.link(staged, target)
        return None
    try:
        old: int | None = os.stat(target).st_ino
    except FileNotFoundError:
        old = None
    os.replace(staged, target)
    return old


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
