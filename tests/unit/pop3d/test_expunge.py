"""pop3d's QUIT as an IMAP expunge through the mailbox model (#13, POP3-21, POP3-14).

The objects live in a real :class:`FileStore`; the KV bucket is a dictionary with revisions
that behaves as JetStream KV's compare-and-set does, and can be told to fail.
"""

from __future__ import annotations

from pathlib import Path

from qmesh.directory.authenticate import Account
from qmesh.mailbox import vanished
from qmesh.mailbox.sync import AccountMailbox
from qmesh.store.files import FileStore
from qmesh.store.keys import mailbox_key
from services.pop3d.mailbox import StoreMaildrops
from tests.unit.memory_kv import MemoryKV

ACCOUNT = Account("example.test", "alice")


class Lease:
    async def confirm(self) -> None:
        pass

    async def release(self) -> None:
        pass


class Leases:
    async def acquire(self, account: Account) -> Lease:
        return Lease()


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.store = FileStore(tmp_path, "mail")
        self.kv = MemoryKV()
        self.announced = 0

    def mailbox(self, account: Account) -> AccountMailbox:
        async def announce() -> None:
            self.announced += 1

        return AccountMailbox(self.store, self.kv, account.domain, account.name, announce=announce)

    async def deliver(self, n: int) -> str:
        unique = f"17325100{n:02d}.M000Q{n:016x}R0I0.qmesh,S=6,W=7"
        key = mailbox_key(ACCOUNT.domain, ACCOUNT.name, "INBOX", "new", unique)
        await self.store.put(key, b"hello\n")
        return unique

    def maildrops(self) -> StoreMaildrops:
        return StoreMaildrops(self.store, Leases(), mailbox=self.mailbox)


async def test_deletions_leave_the_index_in_one_change_and_are_announced(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    names = [await world.deliver(n) for n in range(4)]
    before = await world.mailbox(ACCOUNT).sync("INBOX")  # imapd has looked: UIDs 1..4
    drop = await world.maildrops().open(ACCOUNT)
    assert [m.unique for m in drop.messages] == names  # UIDL: the unique names (POP3-14)
    revision = world.kv.revision
    assert await drop.update(frozenset({1, 2})) == 0
    after = await world.mailbox(ACCOUNT).index("INBOX")
    assert sorted(after.entries) == [names[0], names[3]]
    assert [e.uid for e in after.entries.values()] == [1, 4]  # kept UIDs unchanged
    assert after.highest_modseq == before.highest_modseq + 1
    assert vanished.since(after.gone, after.gone_floor, before.highest_modseq) == [(2, 3)]
    assert world.kv.revision == revision + 1  # one compare-and-set for both deletions
    assert world.announced == 2  # the expunge, then the moves of the kept ones to cur/
    again = await world.maildrops().open(ACCOUNT)
    assert await again.update(frozenset()) == 0
    assert world.announced == 2  # nothing deleted or moved: nothing to tell


async def test_a_failed_index_write_still_deletes_and_the_next_listing_repairs(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    names = [await world.deliver(n) for n in range(2)]
    await world.mailbox(ACCOUNT).sync("INBOX")
    drop = await world.maildrops().open(ACCOUNT)
    world.kv.broken = True
    assert await drop.update(frozenset({0})) == 0  # the message is gone: +OK (POP3-21)
    world.kv.broken = False
    stale = await world.mailbox(ACCOUNT).index("INBOX")
    assert names[0] in stale.entries  # the index still names it ...
    repaired = await world.mailbox(ACCOUNT).sync("INBOX")
    assert list(repaired.entries) == [names[1]]  # ... until the next listing
    assert world.announced == 1  # only the kept message's move to cur/


async def test_an_account_imap_never_saw_gets_no_index(tmp_path: Path) -> None:
    world = World(tmp_path)
    await world.deliver(0)
    drop = await world.maildrops().open(ACCOUNT)
    assert await drop.update(frozenset({0})) == 0
    assert world.kv.values == {}
    assert world.announced == 0
