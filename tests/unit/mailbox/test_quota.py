"""The one quota rule of local and imapd (LOCAL-33, RFC 9208 STORAGE, #13)."""

from __future__ import annotations

import pytest

from qmesh.mailbox.quota import Quota, exceeds


@pytest.mark.parametrize(
    ("limit", "used", "size", "over"),
    [
        (None, 10**12, 10**9, False),  # no quota
        (1000, 0, 1000, False),  # exactly full fits
        (1000, 1, 1000, True),
        (1000, 1000, 0, False),
        (1, 0, 2, True),
    ],
)
def test_exceeds(limit: int | None, used: int, size: int, over: bool) -> None:
    assert exceeds(limit, used, size) is over


def test_storage_is_in_kib_rounded_up_as_dovecot_reports_it() -> None:
    assert Quota(used=2047, limit=10 * 1024 + 1).storage() == (2, 11)
    assert Quota(used=0, limit=1024).storage() == (0, 1)
    assert Quota(used=5, limit=None).storage() is None
