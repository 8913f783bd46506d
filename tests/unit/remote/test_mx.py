"""The pure parts of MX processing (REMOTE-13, REMOTE-16)."""

from __future__ import annotations

import random

import pytest

from qmesh.contract.errors import Permanent
from services.remote import report
from services.remote.mx import Target, ip_literal, order_exchangers, without_self


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("[192.0.2.1]", "192.0.2.1"),
        ("[IPv6:2001:db8::1]", "2001:db8::1"),
        ("[ipv6:::1]", "::1"),
        ("example.test", None),
        ("[example.test]", None),
        ("[300.1.1.1]", None),
    ],
)
def test_remote_13_ip_literals(host: str, address: str | None) -> None:
    assert ip_literal(host) == address


def test_remote_13_increasing_preference_equal_ones_in_random_order() -> None:
    records = [(20, "c"), (10, "a"), (10, "b"), (5, "first"), (30, "last")]
    seen = set()
    for seed in range(40):
        ordered = order_exchangers(records, random.Random(seed))
        assert [p for p, _ in ordered] == [5, 10, 10, 20, 30]
        assert ordered[0] == (5, "first") and ordered[-1] == (30, "last")
        seen.add(tuple(n for _, n in ordered[1:3]))
    assert seen == {("a", "b"), ("b", "a")}


TARGETS = [
    Target("192.0.2.1", 10, "mx1"),
    Target("192.0.2.2", 20, "mx2"),
    Target("2001:db8::3", 20, "mx2"),
    Target("192.0.2.4", 30, "mx3"),
]


def test_remote_16_without_self_everything_is_used() -> None:
    assert without_self(TARGETS, {"198.51.100.1"}) == TARGETS


def test_remote_16_only_exchangers_strictly_better_than_this_system() -> None:
    assert without_self(TARGETS, {"2001:DB8:0::3"}) == TARGETS[:1]
    assert without_self(TARGETS, {"192.0.2.4"}) == TARGETS[:3]


def test_remote_16_best_preference_is_this_system_fails_permanently() -> None:
    with pytest.raises(Permanent) as failure:
        without_self(TARGETS, {"192.0.2.1"})
    assert failure.value.text == report.AMBIGUOUS_MX
    with pytest.raises(Permanent):  # an implicit MX or IP literal pointing here
        without_self([Target("127.0.0.1", 0, "127.0.0.1")], {"127.0.0.1", "0.0.0.0"})
