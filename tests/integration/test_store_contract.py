"""One contract, two stores: the directory store of ``qmesh up`` and S3 (real SeaweedFS).

Every test in the first part runs against both adapters (ARCHITECTURE 5): what a service sees
must not depend on where the bytes live (ARCH-10, ARCH-26, LOCAL-24, LOCAL-60).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from qmesh.contract.events import Origin
from qmesh.contract.queue import enqueue
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobExists, BlobInfo, BlobNotFound, BlobStore, StoreUnavailable
from qmesh.store.factory import open_store
from qmesh.store.files import FileStore
from qmesh.store.keys import BadKey, body_key
from qmesh.store.s3 import S3Store, s3_client
from qmesh.store.upload import BadMetadata
from tests.integration.stores import open_test_store
from tests.servers import S3Server, free_ports

pytestmark = pytest.mark.integration

MIB = 1 << 20
T = TypeVar("T")
BAD_KEYS = ["", "a//b", "../x", "a/./b", "a\\b", "a/\x00", "a\nb", "/a", "a/"]


@pytest.fixture(params=["files", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> BlobStore:
    return await open_test_store(request, tmp_path, f"contract-{unique}")


@pytest.fixture(params=["files", "s3"])
async def small_put_store(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> BlobStore:
    """S3 switches to multipart above 1 MiB here, so a 6 MiB body takes that path."""
    return await open_test_store(request, tmp_path, f"contract-{unique}", single_put_max=MIB)


@pytest.fixture(params=["files", "s3"])
def dead_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """A store that cannot work: its root is a plain file, or nothing listens on its port."""
    if request.param == "files":
        (tmp_path / "not-a-directory").write_bytes(b"")
        return FileStore(tmp_path / "not-a-directory", "qmesh-queue")
    (port,) = free_ports(1)
    return S3Store(s3_client(f"127.0.0.1:{port}", "a-key", "a-secret-value"), "qmesh-queue")


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def keys(infos: list[BlobInfo]) -> list[str]:
    return [i.key for i in infos]


async def test_put_get_stat_round_trip_with_metadata(store: BlobStore) -> None:
    before = time.time()
    meta = {"size": "19", "delivered": "1732510000.123"}
    assert (
        await store.put("d.test/alice/INBOX/new/1.x.h", b"Subject: hi\n\nbody\n", metadata=meta)
        == 18
    )
    assert await store.get("d.test/alice/INBOX/new/1.x.h") == b"Subject: hi\n\nbody\n"
    info = await store.stat("d.test/alice/INBOX/new/1.x.h")
    assert (info.key, info.size, dict(info.metadata)) == ("d.test/alice/INBOX/new/1.x.h", 18, meta)
    assert before - 60 < info.modified < time.time() + 60


async def test_a_plain_put_replaces_the_object_and_its_metadata(store: BlobStore) -> None:
    await store.put("k", b"first", metadata={"n": "1"})
    await store.put("k", chunks(b"second"), metadata={"n": "2"})
    assert await store.get("k") == b"second"
    assert (await store.stat("k")).metadata == {"n": "2"}
    await store.put("k", b"third")
    assert (await store.stat("k")).metadata == {}


async def test_arch_10_create_only_refuses_an_existing_key_and_keeps_the_original(
    store: BlobStore,
) -> None:
    await store.put("mess/1", b"original\n", metadata={"qp": "1"}, create_only=True)
    for body in (b"replacement\n", chunks(b"replacement\n")):
        with pytest.raises(BlobExists):
            await store.put("mess/1", body, metadata={"qp": "2"}, create_only=True)
    assert await store.get("mess/1") == b"original\n"
    assert (await store.stat("mess/1")).metadata == {"qp": "1"}
    assert keys(await store.list("mess/")) == ["mess/1"]


async def test_arch_26_bodies_of_several_mib_stream_in_and_out(store: BlobStore) -> None:
    body = bytes(range(256)) * (9 * MIB // 256) + b"tail"  # beyond what is held in memory
    assert await store.put("mess/big", chunks(body), create_only=True) == len(body)
    assert await store.put("copy/big", chunks(body, 1000)) == len(body)  # multipart on S3
    assert await store.get("mess/big") == body
    parts = [part async for part in store.stream("copy/big", chunk_size=MIB)]
    assert b"".join(parts) == body and max(map(len, parts)) <= MIB
    assert (await store.stat("copy/big")).size == len(body)


async def test_a_ranged_read_gives_exactly_the_octets_asked_for(store: BlobStore) -> None:
    """IMAP's partial FETCH (RFC 3501 6.4.5) reads a range, never the whole object."""
    body = bytes(range(256)) * (3 * MIB // 256)
    await store.put("d/a/INBOX/new/big", chunks(body), metadata={"size": str(len(body))})
    assert await store.get_range("d/a/INBOX/new/big", 0, 1024) == body[:1024]
    assert await store.get_range("d/a/INBOX/new/big", MIB + 7, 100) == body[MIB + 7 : MIB + 107]
    tail = await store.get_range("d/a/INBOX/new/big", len(body) - 10, 1000)
    assert tail == body[-10:]  # fewer where the object ends sooner
    assert await store.get_range("d/a/INBOX/new/big", len(body), 10) == b""
    assert await store.get_range("d/a/INBOX/new/big", 4294967295, 1) == b""
    assert await store.get_range("d/a/INBOX/new/big", 5, 0) == b""
    parts = [p async for p in store.stream_range("d/a/INBOX/new/big", 100, 2 * MIB, 65536)]
    assert b"".join(parts) == body[100 : 100 + 2 * MIB] and max(map(len, parts)) <= 65536
    rest = [p async for p in store.stream_range("d/a/INBOX/new/big", 2 * MIB)]
    assert b"".join(rest) == body[2 * MIB :]
    for offset, length in ((-1, 1), (0, -1)):
        with pytest.raises(ValueError):
            await store.get_range("d/a/INBOX/new/big", offset, length)
    for absent_length in (0, 10):
        with pytest.raises(BlobNotFound):
            await store.get_range("absent", 0, absent_length)
        with pytest.raises(BlobNotFound):
            [p async for p in store.stream_range("absent", 0, absent_length)]
    with pytest.raises(BlobNotFound):
        await store.get_range("absent", 4294967295, 1)


async def test_arch_10_create_only_holds_for_bodies_too_large_for_one_put(
    small_put_store: BlobStore,
) -> None:
    store = small_put_store
    body = b"x" * (6 * MIB)
    await store.put("mess/huge", chunks(body), metadata={"qp": "7"}, create_only=True)
    with pytest.raises(BlobExists):
        await store.put("mess/huge", chunks(b"y" * (6 * MIB)), create_only=True)
    assert await store.get("mess/huge") == body
    assert (await store.stat("mess/huge")).metadata == {"qp": "7"}


async def test_list_is_sorted_by_key_and_filtered_by_prefix(store: BlobStore) -> None:
    for key in ["a/b/2", "b", "a/b/10", "ab", "a/c", "a/b/new/x", "a/bc"]:
        await store.put(key, key.encode())
    everything = await store.list("")
    assert keys(everything) == ["a/b/10", "a/b/2", "a/b/new/x", "a/bc", "a/c", "ab", "b"]
    assert [i.size for i in everything] == [len(k) for k in keys(everything)]
    assert keys(await store.list("a/")) == ["a/b/10", "a/b/2", "a/b/new/x", "a/bc", "a/c"]
    assert keys(await store.list("a/b/")) == ["a/b/10", "a/b/2", "a/b/new/x"]
    assert keys(await store.list("a/b")) == ["a/b/10", "a/b/2", "a/b/new/x", "a/bc"]
    assert keys(await store.list("a/b/ne")) == ["a/b/new/x"]
    assert keys(await store.list("a")) == keys(everything)[:-1]
    assert await store.list("zz/") == []


async def test_list_keys_names_what_list_lists(store: BlobStore) -> None:
    """The listing of names only (a folder's SELECT) is the listing without sizes."""
    for key in ["a/b/2", "b", "a/b/10", "ab", "a/c", "a/b/new/x", "a/bc"]:
        await store.put(key, key.encode(), metadata={"k": "v"} if key == "a/c" else None)
    for prefix in ["", "a/", "a/b/", "a/b", "a/b/ne", "a", "zz/"]:
        assert await store.list_keys(prefix) == keys(await store.list(prefix))
    await store.delete("a/b/2")
    assert await store.list_keys("a/b/") == ["a/b/10", "a/b/new/x"]


async def test_local_24_readers_never_see_a_partial_object(store: BlobStore) -> None:
    await store.put("box/new/old", b"old whole\n")
    release = asyncio.Event()

    async def slow(data: bytes, parked: asyncio.Event) -> AsyncIterator[bytes]:
        yield data[:3]
        parked.set()
        await release.wait()
        yield data[3:]

    parked = [asyncio.Event(), asyncio.Event()]
    new = asyncio.create_task(store.put("box/new/fresh", slow(b"fresh whole\n", parked[0])))
    over = asyncio.create_task(store.put("box/new/old", slow(b"new whole\n", parked[1])))
    await asyncio.gather(*(p.wait() for p in parked))  # both writers are mid-body
    assert keys(await store.list("box/")) == ["box/new/old"]
    with pytest.raises(BlobNotFound):
        await store.get("box/new/fresh")
    with pytest.raises(BlobNotFound):
        await store.stat("box/new/fresh")
    assert await store.get("box/new/old") == b"old whole\n"
    release.set()
    await asyncio.gather(new, over)
    assert await store.get("box/new/fresh") == b"fresh whole\n"
    assert await store.get("box/new/old") == b"new whole\n"


async def test_an_absent_key_is_blob_not_found(store: BlobStore) -> None:
    await store.put("present/x", b"x")
    for absent in ("absent", "present", "present/x/y", "present/y"):
        with pytest.raises(BlobNotFound):
            await store.get(absent)
        with pytest.raises(BlobNotFound):
            await store.stat(absent)
        with pytest.raises(BlobNotFound):
            await store.copy(absent, "elsewhere")
        with pytest.raises(BlobNotFound):
            [part async for part in store.stream(absent)]
    assert keys(await store.list("")) == ["present/x"]


async def test_delete_removes_and_deleting_an_absent_key_is_fine(store: BlobStore) -> None:
    await store.put("d/a/INBOX/new/1", b"1", metadata={"n": "1"})
    await store.put("d/a/INBOX/new/2", b"2")
    await store.delete("d/a/INBOX/new/1")
    await store.delete("d/a/INBOX/new/1")
    await store.delete("never/there")
    with pytest.raises(BlobNotFound):
        await store.get("d/a/INBOX/new/1")
    assert keys(await store.list("d/")) == ["d/a/INBOX/new/2"]
    await store.put("d/a/INBOX/new/1", b"again")  # a deleted key can be written anew
    assert (await store.stat("d/a/INBOX/new/1")).metadata == {}


async def test_pop3_copy_keeps_body_and_metadata(store: BlobStore) -> None:
    meta = {"size": "3", "delivered": "1732510000.000"}
    await store.put("d/a/INBOX/new/u", b"hi\n", metadata=meta)
    await store.copy("d/a/INBOX/new/u", "d/a/INBOX/cur/u:2,S")
    await store.delete("d/a/INBOX/new/u")
    assert keys(await store.list("d/a/INBOX/")) == ["d/a/INBOX/cur/u:2,S"]
    assert await store.get("d/a/INBOX/cur/u:2,S") == b"hi\n"
    assert (await store.stat("d/a/INBOX/cur/u:2,S")).metadata == meta


@pytest.mark.parametrize("bad", BAD_KEYS)
async def test_bad_keys_are_refused_before_any_io(dead_store: BlobStore, bad: str) -> None:
    """Refused with BadKey even by a store that cannot work: no I/O was tried."""
    with pytest.raises(BadKey):
        await dead_store.put(bad, b"x")
    with pytest.raises(BadKey):
        await dead_store.get(bad)
    with pytest.raises(BadKey):
        dead_store.stream(bad)
    with pytest.raises(BadKey):
        await dead_store.stat(bad)
    with pytest.raises(BadKey):
        await dead_store.copy("ok", bad)
    with pytest.raises(BadKey):
        await dead_store.copy(bad, "ok")
    with pytest.raises(BadKey):
        await dead_store.delete(bad)
    with pytest.raises(BadMetadata):
        await dead_store.put("ok", b"x", metadata={"Upper": "x"})


@pytest.mark.parametrize("prefix", ["/", "a//", "../", "a\\/"])
async def test_bad_listing_prefixes_are_refused(dead_store: BlobStore, prefix: str) -> None:
    with pytest.raises(BadKey):
        await dead_store.list(prefix)


async def test_bad_keys_leave_a_working_store_untouched(store: BlobStore) -> None:
    for bad in BAD_KEYS:
        with pytest.raises(BadKey):
            await store.put(bad, b"x")
    assert await store.list("") == []


async def test_ping_answers_for_a_working_store(store: BlobStore) -> None:
    await store.ping()


async def test_arch_26_an_unreachable_store_is_store_unavailable(dead_store: BlobStore) -> None:
    """Nothing listening (or no directory) is a temporary failure, promptly, not a hang."""
    attempts: dict[str, Callable[[], Awaitable[object]]] = {
        "ping": lambda: dead_store.ping(),
        "create": lambda: dead_store.put("mess/1", b"x", create_only=True),
        "put": lambda: dead_store.put("k", chunks(b"x")),
        "get": lambda: dead_store.get("k"),
        "stat": lambda: dead_store.stat("k"),
        "list": lambda: dead_store.list("mess/"),
        "copy": lambda: dead_store.copy("k", "l"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(StoreUnavailable):
            await attempt()
            pytest.fail(f"{name} did not fail")


class RecordingPublisher:
    """Records publishes; stands in for JetStream only in this check of the stored body."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, str]] = []

    async def publish(self, subject: str, payload: bytes, *, msg_id: str) -> None:
        self.calls.append((subject, payload, msg_id))


async def test_queue_03_enqueue_stores_mess_id_with_the_received_line_first(
    store: BlobStore,
) -> None:
    bus = RecordingPublisher()
    queued = await enqueue(
        store, bus, sender="joe@far.test", recipients=["alice@example.test"],
        body=chunks(b"Subject: hi\n\nbody\n", 4), origin=Origin(kind="network"),
        clock=lambda: 1732510000.0,
    )  # fmt: skip
    stored = await store.get(body_key(queued.id))
    assert stored == (
        b"Received: (qmail %d invoked from network); 25 Nov 2024 04:46:40 -0000\n" % queued.qp
        + b"Subject: hi\n\nbody\n"
    )
    assert keys(await store.list("mess/")) == [f"mess/{queued.id}"]
    assert (await store.stat(f"mess/{queued.id}")).metadata == {"qp": str(queued.qp)}
    assert queued.size == len(stored) and len(bus.calls) == 1


async def test_open_store_follows_qmesh_store(
    tmp_path: Path, s3_server: S3Server, unique: str
) -> None:
    on_disk = open_store(Settings(store=f"file://{tmp_path}/data"), "qmesh-queue")
    await on_disk.put("mess/1", b"one\n")
    assert (tmp_path / "data" / "qmesh-queue" / "mess" / "1").read_bytes() == b"one\n"
    settings = Settings(
        store="s3", s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key,
    )  # fmt: skip
    remote = open_store(settings, f"factory-{unique}")
    await remote.ping()  # creates the bucket if it is missing
    await remote.put("mess/1", b"one\n", create_only=True)
    assert await remote.get("mess/1") == b"one\n"


class CountingS3Store(S3Store):
    """The real S3 store, counting its calls into the worker pool."""

    calls: list[str]

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        self.calls.append(getattr(fn, "__name__", "?"))
        return await super()._run(fn, *args, **kwargs)


async def test_a_message_put_on_s3_is_one_worker_call_and_a_missing_bucket_is_made(
    s3_server: S3Server, unique: str
) -> None:
    """Throughput #10: a body in hand is one PUT in one worker call, create-only or not; the
    first put into a bucket that does not exist yet makes it and is stored."""
    client = s3_client(s3_server.endpoint, s3_server.access_key, s3_server.secret_key)
    store = CountingS3Store(client, f"count-{unique}")
    store.calls = []
    await store.put("mess/0", b"first", create_only=True)  # the bucket is made on the way
    store.calls.clear()
    await store.put("mess/1", b"m" * 2048, metadata={"qp": "1"}, create_only=True)
    await store.put("d/a/INBOX/new/1", b"m" * 2048, metadata={"size": "2048"})
    assert store.calls == ["_put_bytes", "_put_bytes"]
    assert await store.get("mess/0") == b"first"
    assert (await store.stat("mess/1")).metadata == {"qp": "1"}
    assert (await store.stat("d/a/INBOX/new/1")).metadata == {"size": "2048"}
    with pytest.raises(BlobExists):
        await store.put("mess/1", b"again", create_only=True)
    assert await store.get("mess/1") == b"m" * 2048
