"""The directory store's own layout: one file per object (ARCHITECTURE 5, ARCH-10, LOCAL-24).

What the contract suite cannot see from outside: an object and its metadata are one file, a
killed writer leaves nothing visible and its staging file is swept, objects written by the
previous release (metadata in a ``.meta-*`` sidecar) still read and list the same, and reading
metadata or sizes never reads a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from qmesh.store import header
from qmesh.store.base import BlobExists, BlobNotFound, StoreUnavailable
from qmesh.store.files import INLINE_READ, STALE_STAGING_SECONDS, FileStore
from qmesh.store.keys import BadKey
from tests.integration.stores import write_previous_layout

T = TypeVar("T")

pytestmark = pytest.mark.integration

MIB = 1 << 20


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store", "qmesh-mail")


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_an_object_and_its_metadata_are_one_file(store: FileStore) -> None:
    meta = {"size": "19", "delivered": "1732510000.123"}
    await store.put("d/a/INBOX/new/1", b"Subject: hi\n\nbody\n", metadata=meta)
    await store.put("mess/2", chunks(b"q" * (3 * MIB)), metadata={"qp": "7"}, create_only=True)
    await store.put("mess/3", b"plain\n")
    assert files_under(store.root) == [
        "qmesh-mail/d/a/INBOX/new/1",
        "qmesh-mail/mess/2",
        "qmesh-mail/mess/3",
    ]
    assert (store.root / "qmesh-mail/mess/3").read_bytes() == b"plain\n"  # no metadata, no header
    assert [(i.key, i.size) for i in await store.list("")] == [
        ("d/a/INBOX/new/1", 18),
        ("mess/2", 3 * MIB),
        ("mess/3", 6),
    ]
    assert (await store.stat("d/a/INBOX/new/1")).metadata == meta
    assert (await store.stat("mess/2")).size == 3 * MIB
    assert b"".join([c async for c in store.stream("mess/2")]) == b"q" * (3 * MIB)


@pytest.mark.parametrize("size", [len(header.MAGIC), 2 * MIB])
async def test_a_body_that_begins_like_a_header_is_stored_as_given(
    store: FileStore, size: int
) -> None:
    body = (header.MAGIC + b"\xff\xff\xff\xff" + b"x" * size)[:size]
    await store.put("k/bytes", body)
    await store.put("k/chunks", chunks(body, 7 if size < MIB else 65537))
    await store.copy("k/chunks", "k/copy")
    for key in ("k/bytes", "k/chunks", "k/copy"):
        assert await store.get(key) == body
        assert b"".join([c async for c in store.stream(key, 5 if size < MIB else 65536)]) == body
        info = await store.stat(key)
        assert (info.size, info.metadata) == (size, {})
    assert {i.size for i in await store.list("k/")} == {size}


class CountingStore(FileStore):
    """The real directory store, counting its calls into the worker pool."""

    calls: list[str]

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        self.calls.append(getattr(fn, "__name__", "?"))
        return await super()._run(fn, *args)


async def test_a_put_and_a_delete_of_a_message_make_no_call_into_the_worker_pool(
    tmp_path: Path,
) -> None:
    """Throughput #10: staging, fsync, link and directory fsync on the loop, and what each put
    made is there to read; a body larger than a write batch still goes through the pool."""
    store = CountingStore(tmp_path / "store", "qmesh-mail")
    store.calls = []
    await store.put("mess/0", b"warm up")  # the first put also sweeps the staging directory
    store.calls.clear()
    await store.put("mess/1", chunks(b"m" * 2048, 512), metadata={"qp": "1"}, create_only=True)
    await store.put("d/a/INBOX/new/1", b"m" * 2048, metadata={"size": "2048"})
    await store.delete("mess/0")
    assert store.calls == []
    assert await store.get("mess/1") == b"m" * 2048
    assert (await store.stat("d/a/INBOX/new/1")).metadata == {"size": "2048"}
    with pytest.raises(BlobNotFound):
        await store.get("mess/0")


async def test_puts_of_one_turn_are_committed_together_each_with_its_own_outcome(
    tmp_path: Path,
) -> None:
    """Writes that reach the disk in the same turn of the loop are committed together, and one
    refused put (create-only on an existing key) fails alone."""
    store = FileStore(tmp_path / "store", "qmesh-queue")
    await store.put("mess/taken", b"first", create_only=True)
    outcomes = await asyncio.gather(
        *(store.put(f"mess/{i}", b"x" * i, create_only=True) for i in range(1, 9)),
        store.put("mess/taken", b"second", create_only=True),
        store.delete("mess/absent"),
        return_exceptions=True,
    )
    assert outcomes[:8] == list(range(1, 9))
    assert isinstance(outcomes[8], BlobExists)
    assert outcomes[9] is None
    assert await store.get("mess/taken") == b"first"
    assert [await store.get(f"mess/{i}") for i in range(1, 9)] == [b"x" * i for i in range(1, 9)]


async def test_a_small_body_and_a_stat_are_read_without_the_worker_pool(tmp_path: Path) -> None:
    """Throughput #10: a message's body and its stat are read on the loop; a body larger than
    INLINE_READ goes to a worker thread, and each reads back exactly what was put."""
    store = CountingStore(tmp_path / "store", "qmesh-queue")
    store.calls = []
    small, large = b"s" * 2048, b"L" * (INLINE_READ + 1)
    await store.put("mess/small", small, metadata={"qp": "1"})
    await store.put("mess/large", large, metadata={"qp": "2"})
    store.calls.clear()
    assert await store.get("mess/small") == small
    assert (await store.stat("mess/small")).size == 2048
    assert store.calls == []
    assert await store.get("mess/large") == large
    assert len(store.calls) == 1
    with pytest.raises(BlobNotFound):
        await store.get("mess/absent")
    with pytest.raises(BlobNotFound):
        await store.stat("mess/absent")


# -- a writer killed half way ------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from qmesh.store.files import FileStore

    async def body():
        yield b"x" * (2 << 20)  # two batches: the staging file is open and written
        yield b"y" * (1 << 20)
        print("writing", flush=True)
        await asyncio.sleep(3600)
        yield b"never"

    async def main():
        store = FileStore(Path(sys.argv[1]), "qmesh-queue")
        await store.put("mess/first", b"whole", metadata={"qp": "0"}, create_only=True)
        await store.put("mess/half", body(), metadata={"qp": "1"}, create_only=True)

    asyncio.run(main())
    """
)


async def test_a_killed_writer_leaves_no_object_and_its_staging_file_is_swept(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(root), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert writer.stdout is not None
        assert await asyncio.wait_for(writer.stdout.readline(), 30) == b"writing\n"
        writer.send_signal(signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            writer.kill()
        await writer.wait()
    (staged,) = (root / ".staging-qmesh-queue").iterdir()
    assert staged.stat().st_size >= 2 * MIB

    store = FileStore(root, "qmesh-queue")
    assert [i.key for i in await store.list("")] == ["mess/first"]
    with pytest.raises(BlobNotFound):
        await store.stat("mess/half")
    await store.put("mess/half", b"whole\n", create_only=True)  # the key was never taken
    assert staged.exists()  # recent: it may belong to a writer still at work

    old = time.time() - STALE_STAGING_SECONDS - 60
    os.utime(staged, (old, old))
    await FileStore(root, "qmesh-queue").put("mess/other", b"x")
    assert list((root / ".staging-qmesh-queue").iterdir()) == []
    assert [i.key for i in await store.list("")] == ["mess/first", "mess/half", "mess/other"]


# -- objects from the previous release ---------------------------------------------------------


async def test_objects_with_a_sidecar_from_the_previous_release_read_the_same(
    store: FileStore,
) -> None:
    meta = {"size": "4", "delivered": "1732510000.000"}
    write_previous_layout(store, "d/a/INBOX/new/u1", b"one\n", meta)
    write_previous_layout(store, "d/a/INBOX/cur/u2:2,S", b"two\n", {"size": "4"})
    write_previous_layout(store, "d/a/INBOX/new/u3", b"three\n")
    assert [(i.key, i.size) for i in await store.list("d/")] == [
        ("d/a/INBOX/cur/u2:2,S", 4),
        ("d/a/INBOX/new/u1", 4),
        ("d/a/INBOX/new/u3", 6),
    ]
    assert await store.get("d/a/INBOX/new/u1") == b"one\n"
    assert (await store.stat("d/a/INBOX/new/u1")).metadata == meta
    assert (await store.stat("d/a/INBOX/new/u3")).metadata == {}

    await store.copy("d/a/INBOX/new/u1", "d/a/INBOX/cur/u1:2,")  # POP3's move writes one file
    await store.delete("d/a/INBOX/new/u1")
    assert (await store.stat("d/a/INBOX/cur/u1:2,")).metadata == meta
    assert await store.get("d/a/INBOX/cur/u1:2,") == b"one\n"
    await store.put("d/a/INBOX/cur/u2:2,S", b"two again\n", metadata={"size": "10"})
    assert (await store.stat("d/a/INBOX/cur/u2:2,S")).metadata == {"size": "10"}
    assert files_under(store.root / ".meta-qmesh-mail") == []  # each sidecar left with its object


# -- hostile keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["../.meta-qmesh-mail/x", "../.staging-qmesh-mail/put-x", "a/../../x", "a/./b", "a//b"]
)
async def test_keys_cannot_reach_the_staging_or_sidecar_directories(
    store: FileStore, key: str
) -> None:
    with pytest.raises(BadKey):
        await store.put(key, b"x", metadata={"n": "1"})
    with pytest.raises(BadKey):
        await store.stat(key)
    assert not store.root.exists() or files_under(store.root) == []


async def test_a_symlink_out_of_the_bucket_is_refused(store: FileStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not an object")
    await store.put("a/b", b"x")
    (store.root / "qmesh-mail" / "link").symlink_to(outside)
    for attempt in (
        store.put("link/new", b"x", metadata={"n": "1"}),
        store.get("link/secret"),
        store.stat("link/secret"),
        store.delete("link/secret"),
        store.copy("link/secret", "a/c"),
    ):
        with pytest.raises(BadKey):
            await attempt
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert [i.key for i in await store.list("")] == ["a/b"]


async def test_a_symlink_deeper_in_the_bucket_is_refused_too(
    store: FileStore, tmp_path: Path
) -> None:
    """A link as a folder of an account, or as the object file itself, leads nowhere outside;
    a link that stays inside the bucket is followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not an object")
    await store.put("d/a/INBOX/new/1", b"inside")
    bucket = store.root / "qmesh-mail"
    (bucket / "d" / "a" / "Lists").symlink_to(outside)
    (bucket / "d" / "a" / "INBOX" / "new" / "2").symlink_to(outside / "secret")
    (bucket / "d" / "a" / "INBOX" / "new" / "3").symlink_to(
        bucket / "d" / "a" / "INBOX" / "new" / "1"
    )
    for key in ("d/a/Lists/secret", "d/a/INBOX/new/2"):
        with pytest.raises(BadKey):
            await store.get(key)
        with pytest.raises(BadKey):
            await store.get_range(key, 0, 5)
        with pytest.raises(BadKey):  # a batch read refuses it as a single read does
            await store.get_ranges(["d/a/INBOX/new/1", key], 0, 5)
    assert await store.get("d/a/INBOX/new/3") == b"inside"
    assert await store.get_range("d/a/INBOX/new/3", 1, 3) == b"nsi"
    found = await store.get_ranges(["d/a/INBOX/new/1", "d/a/INBOX/new/3"], 1, 3)
    assert found == [b"nsi", b"nsi"]


# -- metadata and sizes without the body (POP3-11) ---------------------------------------------


def bytes_read() -> int:
    """Bytes this process has read with read(2) and friends so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


async def test_stat_and_list_read_the_header_never_the_body(store: FileStore) -> None:
    """A 4 GiB body (sparse: nothing is written) is stat'ed and listed reading a few bytes."""
    meta = {"size": "1", "delivered": "1732510000.000"}
    await store.put("d/a/INBOX/new/huge", b"x", metadata=meta)
    path = store.root / "qmesh-mail/d/a/INBOX/new/huge"
    body_size = (4 << 30) + 1
    os.truncate(path, path.stat().st_size - 1 + body_size)
    before = bytes_read()
    info = await store.stat("d/a/INBOX/new/huge")
    (listed,) = await store.list("d/a/INBOX/new/")
    assert bytes_read() - before < 64 * 1024
    assert (info.size, info.metadata) == (body_size, meta)
    assert listed.size == body_size
    first = await anext(aiter(store.stream("d/a/INBOX/new/huge", 16)))
    assert first == b"x" + b"\0" * 15


async def test_a_damaged_header_is_a_store_failure_not_a_body(store: FileStore) -> None:
    await store.put("mess/1", b"body", metadata={"qp": "1"})
    path = store.root / "qmesh-mail/mess/1"
    path.write_bytes(path.read_bytes()[: header.PREFIX + 3])  # cut inside the metadata
    for attempt in (
        lambda: store.get("mess/1"),
        lambda: store.stat("mess/1"),
        lambda: store.copy("mess/1", "mess/2"),
        lambda: anext(aiter(store.stream("mess/1"))),
    ):
        with pytest.raises(StoreUnavailable, match="header"):
            await attempt()
    path.write_bytes(header.MAGIC + b"\xff\xff\xff\xff")  # a length no header has
    with pytest.raises(StoreUnavailable, match="header"):
        await store.list("mess/")
