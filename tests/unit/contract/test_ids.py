"""Queue ids and qp numbers."""

from __future__ import annotations

from qmesh.contract.ids import new_qp, new_queue_id, parse_queue_id, queue_id_birth


def test_queue_06_queue_ids_are_unique_sortable_and_not_the_qp() -> None:
    ids = [new_queue_id(1_732_510_000.0 + k / 1000) for k in range(1000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids  # later enqueue, later in sort order
    assert new_queue_id(1_732_510_000.0) != new_queue_id(1_732_510_000.0)
    qid = new_queue_id(1_732_510_000.5)
    assert parse_queue_id(qid) == qid and queue_id_birth(qid) == 1_732_510_000.5


def test_queue_05_qp_is_a_positive_decimal_below_2_to_the_53() -> None:
    qps = {new_qp() for _ in range(1000)}
    assert len(qps) == 1000 and all(0 < qp < 2**53 for qp in qps)
