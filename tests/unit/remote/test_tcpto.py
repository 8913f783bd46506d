"""qmail-tcpto's rules (REMOTE-22)."""

from __future__ import annotations

import random

import pytest

from services.remote.tcpto import (
    Record,
    after_timeout,
    decode,
    encode,
    key_for,
    skip_window,
    skipped,
)

HOUR = 3600.0


def test_remote_22_first_timeout_is_recorded_with_its_time() -> None:
    assert after_timeout(None, 1000.0) == Record(1000.0, 1)


def test_remote_22_another_timeout_counts_only_two_minutes_later() -> None:
    first = Record(1000.0, 1)
    assert after_timeout(first, 1000.0 + 119) == first
    assert after_timeout(first, 1000.0 + 120) == Record(1120.0, 2)


def test_remote_22_two_errors_skip_for_the_window_after_the_last_timeout() -> None:
    window = 70 * 60.0
    assert not skipped(None, 0.0, window)
    assert not skipped(Record(0.0, 1), 1.0, window)
    assert skipped(Record(0.0, 2), window - 1, window)
    assert not skipped(Record(0.0, 2), window, window)


def test_remote_22_the_window_is_64_to_97_minutes_per_worker() -> None:
    windows = [skip_window(random.Random(seed)) for seed in range(200)]
    assert all(64 * 60 <= w <= 97 * 60 for w in windows)
    assert max(windows) - min(windows) > 20 * 60


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("127.0.0.1", "ip4.7f000001"),
        ("::1", "ip6.00000000000000000000000000000001"),
        ("2001:DB8::1", "ip6.20010db8000000000000000000000001"),
    ],
)
def test_remote_22_keys_are_built_from_the_address_only(address: str, key: str) -> None:
    assert key_for(address) == key


def test_remote_22_records_round_trip_and_damaged_ones_count_as_none() -> None:
    assert decode(encode(Record(12.5, 3))) == Record(12.5, 3)
    assert decode(b"not json") is None
    assert decode(b'{"when": 1}') is None
    assert decode(None) is None
