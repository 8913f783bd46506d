"""local's watched copy of directory records on a real nats-server (LOCAL-55, throughput #10):
a record read once is served from memory, a change, a deletion or a disabled account is seen
within moments, and a record created after a miss is found at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import nats
import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.contract import subjects
from qmesh.directory import admin
from qmesh.directory.cache import DirectoryCache
from qmesh.directory.namespaces import Target
from qmesh.directory.records import AccountRecord
from qmesh.directory.store import Directory
from qmesh.runtime.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def directory(nats_url: str) -> AsyncIterator[Directory]:
    nc = await nats.connect(nats_url)
    try:
        yield await Directory.open(nc.jetstream())
    finally:
        await nc.close()


@pytest.fixture
def domain(unique: str) -> str:
    return f"c{unique}.test"


class Counting:
    """The bucket as local reads it, counting the reads that reach NATS."""

    def __init__(self, conn: NatsConnection) -> None:
        self.conn = conn
        self.reads = 0

    def __call__(self) -> Directory:
        self.reads += 1
        return Directory(self.conn.kv(subjects.KV_DIRECTORY))


@pytest.fixture
async def watched(nats_url: str) -> AsyncIterator[tuple[DirectoryCache, Counting]]:
    conn = NatsConnection(Settings(nats_url=nats_url), "test", kv_buckets=(subjects.KV_DIRECTORY,))
    await conn.start()
    cache = DirectoryCache(conn)
    await cache.start()
    try:
        await _eventually(lambda: cache.watching)
        yield cache, Counting(conn)
    finally:
        await cache.stop()
        await conn.stop()


async def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {seconds} s")


async def settled(cache: DirectoryCache) -> None:
    """Until the watch has heard every change made so far (none new for 0.3 s, at most 5 s)."""
    deadline = asyncio.get_running_loop().time() + 5
    seen = -1
    while cache.changes != seen and asyncio.get_running_loop().time() < deadline:
        seen = cache.changes
        await asyncio.sleep(0.3)


async def test_records_read_once_then_from_memory(
    watched: tuple[DirectoryCache, Counting], directory: Directory, domain: str
) -> None:
    cache, source = watched
    reader = cache.reader(source)
    await admin.add_domain(directory, domain)
    await directory.create_account(AccountRecord(domain=domain, name="bob", quota=5000))
    await settled(cache)  # the watch has heard both writes: a read from now on is kept
    for _ in range(5):
        found = await reader.get_domain(domain)
        assert found is not None and found.name == domain
        bob = await reader.get_account(domain, "bob")
        assert bob is not None and bob.quota == 5000
    assert source.reads == 2  # one read of each record; four deliveries more from memory


async def test_a_change_reaches_the_copy_within_moments_local55(
    watched: tuple[DirectoryCache, Counting], directory: Directory, domain: str
) -> None:
    cache, source = watched
    reader = cache.reader(source)
    await admin.add_domain(directory, domain)
    await directory.create_account(AccountRecord(domain=domain, name="bob"))
    assert await reader.get_account(domain, "bob") is not None

    await directory.update_account(
        domain, "bob", lambda r: r.model_copy(update={"rules": {"": "&carol@example.test\n"}})
    )

    async def rule() -> str | None:
        bob = await reader.get_account(domain, "bob")
        return bob.rules.get("") if bob is not None else None

    for _ in range(250):
        if await rule() == "&carol@example.test\n":
            break
        await asyncio.sleep(0.02)
    assert await rule() == "&carol@example.test\n"

    await directory.update_account(domain, "bob", lambda r: r.model_copy(update={"enabled": False}))
    await _eventually(lambda: cache.get(f"account.{domain}.bob") is None)
    bob = await reader.get_account(domain, "bob")
    assert bob is not None and not bob.enabled

    await admin.delete_user(directory, Target(domain, "bob"))
    await _eventually(lambda: cache.get(f"account.{domain}.bob") is None)
    assert await reader.get_account(domain, "bob") is None


async def test_an_account_created_after_a_miss_is_found_at_once(
    watched: tuple[DirectoryCache, Counting], directory: Directory, domain: str
) -> None:
    """Absence is never kept: a message for an account made a moment ago finds it."""
    cache, source = watched
    reader = cache.reader(source)
    await admin.add_domain(directory, domain)
    assert await reader.get_account(domain, "newcomer") is None
    await directory.create_account(AccountRecord(domain=domain, name="newcomer"))
    found = await reader.get_account(domain, "newcomer")
    assert found is not None and found.name == "newcomer"


async def test_without_its_watch_the_copy_keeps_nothing(
    nats_url: str, directory: Directory, domain: str
) -> None:
    """Before the watch is in place (or after it was lost) every read goes to the bucket."""
    conn = NatsConnection(Settings(nats_url=nats_url), "test", kv_buckets=(subjects.KV_DIRECTORY,))
    await conn.start()
    try:
        await asyncio.wait_for(conn.ready.wait(), 10)
        cache = DirectoryCache(conn)  # not started: nothing watches the bucket
        source = Counting(conn)
        reader = cache.reader(source)
        await admin.add_domain(directory, domain)
        for _ in range(3):
            assert await reader.get_domain(domain) is not None
        assert source.reads == 3
    finally:
        await conn.stop()
