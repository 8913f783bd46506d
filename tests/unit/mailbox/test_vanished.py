"""The expunged-UID record QRESYNC reads (#13, RFC 7162 3.2.5): kept with the index, bounded."""

from __future__ import annotations

import json
import zlib

import pytest

from qmesh.mailbox import index as idx
from qmesh.mailbox import vanished
from qmesh.mailbox.index import Listed


def listing(n: int) -> list[Listed]:
    return [Listed(f"m{i:05d}", f"new/m{i:05d}", 10, 100 + i) for i in range(n)]


def test_expunge_and_vanished_object_are_both_remembered_with_their_modseq() -> None:
    base = idx.reconcile(idx.new_index(9), listing(6))  # UIDs 1..6
    after_remove = idx.remove(base, ["m00001", "m00002"])  # UIDs 2, 3
    at = after_remove.highest_modseq
    assert after_remove.gone == ((2, 3, at),)
    # pop3d deleted UID 5's object: the next look drops it and remembers it too
    rest = [i for i in listing(6) if i.unique not in {"m00001", "m00002", "m00004"}]
    later = idx.reconcile(after_remove, rest)
    assert later.gone == ((2, 3, at), (5, 5, later.highest_modseq))
    assert vanished.since(later.gone, later.gone_floor, base.highest_modseq) == [(2, 3), (5, 5)]
    assert vanished.since(later.gone, later.gone_floor, at) == [(5, 5)]
    assert vanished.since(later.gone, later.gone_floor, later.highest_modseq) == []


def test_record_survives_encode_and_old_values_know_nothing_before_their_modseq() -> None:
    got = idx.remove(idx.reconcile(idx.new_index(9), listing(3)), ["m00000"])
    assert idx.decode(idx.encode(got)) == got
    doc = json.loads(zlib.decompress(idx.encode(got)))
    del doc["gone"], doc["gfl"]  # as code before QRESYNC wrote it
    old = idx.decode(zlib.compress(json.dumps(doc).encode()))
    assert old.gone == () and old.gone_floor == old.highest_modseq
    assert vanished.since(old.gone, old.gone_floor, 1) is None  # no exact answer: fall back


def test_record_is_bounded_and_floor_rises_with_what_it_drops() -> None:
    runs: tuple[vanished.Run, ...] = ()
    floor = 0
    for modseq in range(1, vanished.MAX_RUNS + 11):
        runs, floor = vanished.note(runs, floor, [modseq * 2], modseq)  # never consecutive
    assert len(runs) == vanished.MAX_RUNS
    assert floor == 10
    assert vanished.since(runs, floor, 9) is None
    assert vanished.since(runs, floor, vanished.MAX_RUNS + 9) == [
        (2 * (vanished.MAX_RUNS + 10),) * 2
    ]


def test_one_big_expunge_is_one_run() -> None:
    runs, _ = vanished.note((), 0, range(1, 10_001), 5)
    assert runs == ((1, 10_000, 5),)


@pytest.mark.parametrize(
    ("present", "below", "want"),
    [
        ([], 1, []),
        ([], 4, [(1, 3)]),
        ([1, 2, 3], 4, []),
        ([2, 5], 7, [(1, 1), (3, 4), (6, 6)]),
        ([2, 9], 5, [(1, 1), (3, 4)]),
    ],
)
def test_absent(present: list[int], below: int, want: list[tuple[int, int]]) -> None:
    assert vanished.absent(present, below) == want


def test_intersect_never_expands_ranges() -> None:
    huge = [(1, 4_294_967_295)]
    assert vanished.intersect(huge, [(5, 7), (10, 10)]) == [(5, 7), (10, 10)]
    assert vanished.intersect([(1, 3), (8, 9)], [(2, 8)]) == [(2, 3), (8, 8)]
    assert vanished.merge([(5, 6), (1, 2), (3, 4), (9, 9), (2, 3)]) == [(1, 6), (9, 9)]


@pytest.mark.parametrize("raw", [None, "x", [[1, 2]], [[1, 2, "3"]], [1, 2, 3]])
def test_malformed_stored_record_is_ignored(raw: object) -> None:
    assert vanished.to_runs(raw) is None
