"""The folder index as pure transitions: UIDs, flags, MODSEQ (#13)."""

from __future__ import annotations

import binascii
import json
import zlib

import pytest

from qmesh.mailbox import index as idx
from qmesh.mailbox.flags import DELETED, SEEN, from_info, normalise, to_info
from qmesh.mailbox.folders import (
    BadFolderName,
    check_name,
    from_segment,
    key_segment,
    modutf7_decode,
)
from qmesh.mailbox.index import Listed


def item(unique: str, when: int = 100, sub: str = "new", info: str = "") -> Listed:
    key = f"{sub}/{unique}" + (f":2,{info}" if sub == "cur" else "")
    return Listed(unique, key, 10, when, info)


def test_new_messages_get_uids_in_delivery_order() -> None:
    base = idx.new_index(7)
    got = idx.reconcile(base, [item("b", 200), item("a", 100), item("c", 200)])
    assert {u: e.uid for u, e in got.entries.items()} == {"a": 1, "b": 2, "c": 3}
    assert got.next_uid == 4 and got.uidvalidity == 7


def test_two_replicas_reconciling_the_same_listing_agree() -> None:
    listing = [item("x", 5), item("y", 3)]
    one = idx.reconcile(idx.new_index(1), listing)
    two = idx.reconcile(idx.new_index(1), list(reversed(listing)))
    assert one == two


def test_uids_are_never_reused_after_expunge() -> None:
    first = idx.reconcile(idx.new_index(1), [item("a"), item("b")])
    gone = idx.reconcile(first, [item("a")])
    again = idx.reconcile(gone, [item("a"), item("c")])
    assert again.entries["c"].uid == 3
    assert gone.highest_modseq > first.highest_modseq


def test_pop3_move_keeps_uid_and_flags() -> None:
    first = idx.reconcile(idx.new_index(1), [item("a")])
    flagged = idx.set_flags(first, [1], frozenset({SEEN}), "add")
    moved = idx.reconcile(flagged, [item("a", sub="cur")])
    assert moved.entries["a"].uid == 1
    assert moved.entries["a"].flags == {SEEN}
    assert moved.entries["a"].key == "cur/a:2,"


def test_interrupted_move_is_one_message() -> None:
    got = idx.reconcile(idx.new_index(1), [item("a"), item("a", sub="cur", info="S")])
    assert len(got.entries) == 1 and got.entries["a"].flags == {SEEN}


def test_unchanged_listing_is_the_same_index() -> None:
    first = idx.reconcile(idx.new_index(1), [item("a")])
    assert idx.reconcile(first, [item("a")]) is first


@pytest.mark.parametrize(
    ("mode", "start", "flags", "want"),
    [
        ("add", {SEEN}, {DELETED}, {SEEN, DELETED}),
        ("remove", {SEEN, DELETED}, {DELETED}, {SEEN}),
        ("replace", {SEEN}, {"$Junk"}, {"$Junk"}),
    ],
)
def test_flag_modes(mode: idx.FlagMode, start: set[str], flags: set[str], want: set[str]) -> None:
    base, _ = idx.add(idx.new_index(1), item("a"), frozenset(start))
    got = idx.set_flags(base, [1], frozenset(flags), mode)
    assert got.entries["a"].flags == want
    assert got.entries["a"].modseq == got.highest_modseq > base.highest_modseq


def test_unchanged_since_leaves_newer_messages_alone() -> None:
    base, _ = idx.add(idx.new_index(1), item("a"), frozenset())
    later = idx.set_flags(base, [1], frozenset({SEEN}), "add")
    got = idx.set_flags(
        later, [1], frozenset({DELETED}), "add", unchanged_since=base.highest_modseq
    )
    assert got is later


def test_claim_recent_once() -> None:
    base = idx.reconcile(idx.new_index(1), [item("a"), item("b")])
    after, claimed = idx.claim_recent(base)
    assert list(claimed) == [1, 2]
    assert list(idx.claim_recent(after)[1]) == []


def test_encode_decode_round_trip() -> None:
    base = idx.reconcile(idx.new_index(9), [item("a"), item("b", info="FS", sub="cur")])
    assert idx.decode(idx.encode(base)) == base


def _reference_encoding(index: idx.FolderIndex) -> bytes:
    """The stored form as one JSON document of the whole index (what other readers parse)."""
    doc = {
        "v": idx.FORMAT,
        "uv": index.uidvalidity,
        "next": index.next_uid,
        "hms": index.highest_modseq,
        "recent": index.first_recent,
        "m": [
            [u, e.uid, e.modseq, sorted(e.flags), e.size, e.when, e.key]
            for u, e in index.entries.items()
        ],
        "gone": [list(r) for r in index.gone],
        "gfl": index.gone_floor,
    }
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1)


def test_each_revision_encodes_to_the_whole_document() -> None:
    """Rows kept from an earlier revision's encoding never leave a stale row in a later one."""
    listing = [
        Listed(f"{1700 + i}.M{i}", f"new/{1700 + i}.M{i}", 10 + i, 1700 + i, "S" * (i % 2))
        for i in range(50)
    ]
    first = idx.reconcile(idx.new_index(9), listing)
    flagged = idx.set_flags(first, [3, 4], frozenset({"$Junk", "\\Flagged"}), "add")
    claimed, _ = idx.claim_recent(flagged)
    expunged = idx.remove(claimed, ["1702.M2", "1710.M10"])
    moved = idx.reconcile(
        expunged, [*listing[:5], *listing[6:], Listed("1705.M5", "cur/1705.M5:2,S", 15, 1705)]
    )
    for index in (idx.new_index(1), first, flagged, claimed, expunged, moved, first):
        assert idx.encode(index) == _reference_encoding(index)
        assert idx.decode(idx.encode(index)) == index


@pytest.mark.parametrize("raw", [b"", b"not zlib", b"x\x9c\x03\x00\x00\x00\x00\x01"])
def test_decode_refuses_garbage(raw: bytes) -> None:
    with pytest.raises(idx.BadIndex):
        idx.decode(raw)


def test_maildir_letters() -> None:
    assert from_info("FRS") == {"\\Flagged", "\\Answered", SEEN}
    assert to_info({SEEN, "\\Draft", "kw"}) == "DS"
    assert normalise("\\seen") == SEEN and normalise("\\Recent") is None
    assert normalise("a b") is None and normalise("$Junk") == "$Junk"


@pytest.mark.parametrize(
    "name",
    ["", "..", "a..b", ".a", "a.", "a/b", "a\\b", "a\x00b", "a%", "a*", "INBOX.x", "x" * 201],
)
def test_bad_folder_names(name: str) -> None:
    with pytest.raises(BadFolderName):
        check_name(name)


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("inbox", "INBOX"),
        ("Lists.qmail", "Lists.qmail"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("My Mail", "My%20Mail"),
    ],
)
def test_folder_key_segments(name: str, segment: str) -> None:
    assert key_segment(name) == segment
    assert from_segment(segment) == check_name(name)


def test_segments_that_are_not_folders() -> None:
    assert from_segment(".mbox") is None
    assert from_segment("a..b") is None


@pytest.mark.parametrize(
    ("raw", "want"),
    [(b"Entw&APw-rfe", "Entwürfe"), (b"&-", "&"), (b"a&-b", "a&b"), (b"plain", "plain")],
)
def test_modified_utf7(raw: bytes, want: str) -> None:
    assert modutf7_decode(raw) == want


@pytest.mark.parametrize("raw", [b"&Jjo", b"&", b"&!!-", b"&A-", b"\xff"])
def test_modified_utf7_refuses_malformed_runs(raw: bytes) -> None:
    with pytest.raises((ValueError, binascii.Error)):
        modutf7_decode(raw)
