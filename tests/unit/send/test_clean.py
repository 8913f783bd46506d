"""qmail-clean's orphan rule, pure (CLEAN-03, CLEAN-05, CLEAN-06, QUEUE-08)."""

from __future__ import annotations

from qmesh.contract.ids import QueueId
from qmesh.store.base import BlobInfo
from services.send.clean import (
    CLEAN_INTERVAL,
    ENQUEUE_LIMIT,
    ORPHAN_AGE,
    body_id,
    old_bodies,
    orphans,
)

HOUR = 3600.0
BORN = 1732510000.123  # the time in the ids below
OLD = QueueId("1732510000123.0123456789abcdef")
YOUNG = QueueId("1732510000123.fedcba9876543210")


def test_clean_03_orphan_age_is_36_hours_above_the_enqueue_limit() -> None:
    assert ORPHAN_AGE == 36 * HOUR > ENQUEUE_LIMIT == 24 * HOUR


def test_clean_05_sweep_at_least_once_a_day() -> None:
    assert 0 < CLEAN_INTERVAL <= 24 * HOUR


def test_clean_03_only_bodies_older_than_36_hours_are_candidates() -> None:
    now = BORN + 40 * HOUR
    bodies = [
        BlobInfo(f"mess/{OLD}", 10, BORN),  # 40 h old
        BlobInfo(f"mess/{YOUNG}", 10, BORN + 5 * HOUR),  # written late: 35 h old
        BlobInfo("mess/not-a-queue-id", 10, 0.0),  # not ours to judge
        BlobInfo(f"other/{OLD}", 10, 0.0),
    ]
    assert old_bodies(bodies, now) == [OLD]
    assert old_bodies(bodies, BORN + 36 * HOUR) == []  # exactly 36 h: never earlier


def test_clean_03_age_counts_from_the_later_of_object_time_and_id_time() -> None:
    # an object time far in the past does not make a body born an hour ago old
    assert old_bodies([BlobInfo(f"mess/{OLD}", 1, 0.0)], BORN + HOUR) == []


def test_clean_06_referenced_bodies_are_not_orphans() -> None:
    assert orphans([OLD, YOUNG], {YOUNG}) == [OLD]
    assert orphans([OLD], set()) == [OLD]


def test_body_id_accepts_only_body_keys() -> None:
    assert body_id(f"mess/{OLD}") == OLD
    assert body_id("mess/../x") is None and body_id(f"intd/{OLD}") is None
