"""``get_ranges``: many short reads in one call (IMAP's header blocks for a first SEARCH, #13)
give exactly what ``get_range`` of each key gives, on both stores; on the directory store no
key reaches outside the bucket through a link, as no single read does."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmesh.store.base import BlobNotFound, BlobStore
from qmesh.store.files import FileStore
from qmesh.store.keys import BadKey
from tests.integration.stores import open_test_store, write_previous_layout

pytestmark = pytest.mark.integration


@pytest.fixture(params=["files", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> BlobStore:
    return await open_test_store(request, tmp_path, f"ranges-{unique}")


async def test_get_ranges_gives_what_each_get_range_gives(store: BlobStore) -> None:
    bodies = {
        "d/a/INBOX/new/1": b"Subject: one\n\nbody\n",
        "d/a/INBOX/new/2": b"",
        "d/a/INBOX/cur/3": bytes(range(256)) * 100,
        "d/a/.Lists/new/4": b"\x00qmesh-object1\n\x00 a body that starts like a header",
        "d/b/INBOX/new/5": b"x" * 10,
    }
    for key, body in bodies.items():
        await store.put(key, body)
    await store.put("d/a/INBOX/new/6", b"with metadata " * 50, metadata={"k": "v" * 1500})
    keys = [*bodies, "d/a/INBOX/new/6", "d/a/INBOX/new/absent", "d/absent/INBOX/new/1"]
    keys.insert(2, "d/a/INBOX/new/1")  # the same key twice, directories taken in turn
    await store.put("d/a/INBOX/new/7", bytes(range(256)) * 2000, metadata={"k": "\\" * 2040})
    keys.append("d/a/INBOX/new/7")  # a header longer than one look, a body past a short read
    ranges = ((0, 16384), (0, 5), (7, 3000), (30000, 10), (0, 0), (300_000, 100_000))
    for offset, length in (*ranges, (4294967295, 1), (0, 600_000)):
        expected: list[bytes | None] = []
        for key in keys:
            try:
                expected.append(await store.get_range(key, offset, length))
            except BlobNotFound:
                expected.append(None)
        assert await store.get_ranges(keys, offset, length) == expected, (offset, length)
    assert await store.get_ranges([], 0, 10) == []
    with pytest.raises(ValueError):
        await store.get_ranges(["d/a/INBOX/new/1"], -1, 10)
    with pytest.raises(BadKey):
        await store.get_ranges(["d/a/INBOX/new/1", "../x"], 0, 10)


async def test_get_ranges_reads_objects_of_the_previous_layout(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store", "qmesh-mail")
    write_previous_layout(store, "d/a/INBOX/new/old", b"Subject: old\n\n", {"size": "14"})
    assert await store.get_ranges(["d/a/INBOX/new/old"], 0, 100) == [b"Subject: old\n\n"]


async def test_get_ranges_gives_none_for_a_directory_in_place_of_an_object(
    tmp_path: Path,
) -> None:
    """A directory where an object's file would be reads as an absent object. (Links that
    lead outside the bucket are refused to batch and single reads alike: test_store_files.)"""
    store = FileStore(tmp_path / "store", "qmesh-mail")
    await store.put("d/a/INBOX/new/1", b"inside")
    bucket = store.root / "qmesh-mail"
    (bucket / "d" / "a" / "INBOX" / "new" / "dir").mkdir()
    assert await store.get_ranges(["d/a/INBOX/new/dir"], 0, 5) == [None]
