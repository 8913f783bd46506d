"""Folding a listing into the POP3 snapshot (POP3-10, POP3-14, POP3-21)."""

from __future__ import annotations

from qmesh.store.base import BlobInfo
from services.pop3d.mailbox import StoredMessage, fold


def entry(rel: str, unique: str, modified: float) -> tuple[BlobInfo, str, str, int]:
    return BlobInfo(key="d/a/INBOX/" + rel, size=10, modified=modified), rel, unique, 12


def test_order_is_delivery_time_then_unique_name_pop3_10() -> None:
    messages = fold(
        [
            entry("new/b", "b", 20.0),
            entry("cur/c:2,S", "c", 10.0),
            entry("new/a", "a", 20.0),
        ]
    )
    assert [m.unique for m in messages] == ["c", "a", "b"]


def test_new_and_cur_copies_of_one_message_are_one_pop3_14() -> None:
    for entries in (
        [entry("new/u", "u", 5.0), entry("cur/u:2,", "u", 9.0)],
        [entry("cur/u:2,", "u", 9.0), entry("new/u", "u", 5.0)],
    ):
        assert fold(entries) == [StoredMessage("u", 12, "cur/u:2,", 9.0, ("new/u",))]


def test_a_second_cur_name_is_left_alone() -> None:
    messages = fold([entry("cur/u:2,", "u", 1.0), entry("cur/u:2,S", "u", 2.0)])
    assert messages == [StoredMessage("u", 12, "cur/u:2,", 1.0)]
