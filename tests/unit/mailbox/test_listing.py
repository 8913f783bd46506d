"""A folder's listing from object names alone (#13): only what a name does not carry is read.

The objects live in a real :class:`FileStore`; the KV bucket is a dictionary with revisions
that behaves as JetStream KV's compare-and-set does.
"""

from __future__ import annotations

import os
from pathlib import Path

from qmesh.mailbox.sync import AccountMailbox
from qmesh.store.files import FileStore
from qmesh.store.keys import mailbox_key
from qmesh.store.maildir import pop3_size
from tests.unit.memory_kv import MemoryKV

BODY = b"Subject: hi\n\nline one\nline two\n"


async def test_names_with_size_and_time_are_listed_without_reading_the_objects(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path, "mail")
    unique = "1732510000.M1Q1R0I0.qmesh,W=999"  # the name's size, not the body's, is RFC822.SIZE
    await store.put(mailbox_key("example.test", "alice", "INBOX", "new", unique), BODY)
    box = AccountMailbox(store, MemoryKV(), "example.test", "alice", clock=lambda: 1.0)
    (entry,) = (await box.sync("INBOX")).entries.values()
    assert (entry.size, entry.when, entry.key) == (999, 1732510000, f"new/{unique}")


async def test_a_name_without_size_or_time_is_completed_from_the_object_once(
    tmp_path: Path,
) -> None:
    """A Maildir file from elsewhere: no leading seconds and no ``,W=``. Its size is counted
    from its body and its time is the object's, when the folder first sees it."""
    store = FileStore(tmp_path, "mail")
    key = mailbox_key("example.test", "alice", "INBOX", "cur", "imported-1:2,S")
    await store.put(key, BODY)
    os.utime(tmp_path / "mail" / key, (1_700_000_000, 1_700_000_000))
    box = AccountMailbox(store, MemoryKV(), "example.test", "alice", clock=lambda: 1.0)
    (entry,) = (await box.sync("INBOX")).entries.values()
    assert (entry.size, entry.when, entry.flags) == (
        pop3_size(BODY),
        1_700_000_000,
        frozenset({"\\Seen"}),
    )
    os.utime(tmp_path / "mail" / key, (1_800_000_000, 1_800_000_000))
    await store.put(mailbox_key("example.test", "alice", "INBOX", "new", "imported-2"), b"x\n")
    index = await box.sync("INBOX")
    first, second = index.entries.values()
    assert (first.uid, first.when, first.size) == (entry.uid, 1_700_000_000, pop3_size(BODY))
    assert (second.uid, second.size) == (entry.uid + 1, 3)
    await store.delete(key)
    assert [e.key for e in (await box.sync("INBOX")).entries.values()] == ["new/imported-2"]
