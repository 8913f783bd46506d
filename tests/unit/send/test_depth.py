"""The oldest-message age behind qmesh_send_queue_oldest_seconds (the chart's queue-age alert)."""

from __future__ import annotations

from services.send.depth import oldest_age


def test_oldest_age_comes_from_the_queue_ids() -> None:
    ids = ["1732510000000.0123456789abcdef", "1732510600000.0123456789abcdef", "not-an-id"]
    assert oldest_age(ids, 1732513600.0) == 3600.0
    assert oldest_age([], 1732513600.0) == 0.0
