"""The delivery ledger's records (hardening #10): keys, claims and final outcomes."""

from __future__ import annotations

import pytest

from qmesh.bus.ledger import (
    RELEASED,
    Claim,
    Recorded,
    Released,
    claim_value,
    final_value,
    key_for,
    read,
)
from qmesh.contract.events import LocalJob, RemoteJob
from qmesh.contract.ids import new_qp, new_queue_id

QID = new_queue_id()
COMMON = {"id": QID, "qp": new_qp(), "sender": "a@x.test", "size": 1}


def test_one_key_per_recipient_index_for_every_channel_and_attempt() -> None:
    """ADDR-06, ARCH-11: the index, not the address or the attempt, names the record."""
    local = LocalJob(**COMMON, recipient="b@y.test", rcpt_index=2, attempt=1, namespace="y.test")
    later = RemoteJob(**COMMON, recipient="b@z.test", rcpt_index=2, attempt=7)
    assert key_for(local) == key_for(later) == f"{QID}.2"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (claim_value("t1", 12.5), Claim("t1", 12.5)),
        (final_value("delivered", "did 1+0+0\n", None), Recorded("delivered", "did 1+0+0\n", None)),
        (final_value("failed", "5.1.1", "192.0.2.1"), Recorded("failed", "5.1.1", "192.0.2.1")),
        (b"", None),
        (b"[]", None),
        (b'{"claim": "t"}', None),
        (b'{"outcome": "deferred", "at": "x"}', None),
        (RELEASED, Released()),  # a deferral: the next claim is no first attempt
        (b'{"released": "yes"}', None),
        (b'{"released": true, "outcome": "delivered"}', Recorded("delivered", "", None)),
    ],
)
def test_read(value: bytes, expected: Recorded | Claim | Released | None) -> None:
    assert read(value) == expected
