"""The cluster-wide limits' rules over stored records, without NATS (defences #12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmesh.limits import rules
from qmesh.limits.rules import Limits


@pytest.mark.parametrize(
    ("remote", "client", "net"),
    [
        ("192.0.2.7", "4xc0000207", "4xc00002"),
        ("::ffff:192.0.2.7", "4xc0000207", "4xc00002"),
        ("2001:db8:1:2:3:4:5:6", "6x20010db800010002", "6x20010db80001"),
        ("2001:db8:1:2::ffff", "6x20010db800010002", "6x20010db80001"),
    ],
)
def test_client_and_network_keys(remote: str, client: str, net: str) -> None:
    assert rules.client_keys(remote) == (client, net)


@given(st.text())
def test_any_remote_gives_valid_kv_key_tokens(remote: str) -> None:
    for token in rules.client_keys(remote):
        assert token and all(c.isalnum() and c.isascii() for c in token)
    key = rules.login_failure_key(remote)
    assert key.startswith("fail.login.") and all(c.isalnum() or c == "." for c in key)


def test_connections_are_admitted_up_to_the_limit_and_expire() -> None:
    raw = None
    for n in range(3):
        change = rules.open_connection(raw, f"t{n}", deadline=100.0, now=0.0, limit=3)
        assert change.allowed and change.count == n + 1
        raw = change.record
    refused = rules.open_connection(raw, "t3", deadline=100.0, now=0.0, limit=3)
    assert not refused.allowed and refused.record is None
    raw = rules.close_connection(raw, "t1", now=0.0).record
    assert rules.open_connection(raw, "t3", deadline=100.0, now=0.0, limit=3).allowed
    # a replica that died without releasing: its places end at their deadline
    assert rules.open_connection(raw, "t4", deadline=300.0, now=150.0, limit=1).allowed


@pytest.mark.parametrize("garbage", [b"", b"[]", b"{", b"\xff", b'{"a": "x"}', b'{"a": true}'])
def test_unreadable_records_never_refuse(garbage: bytes) -> None:
    assert rules.open_connection(garbage, "t", 10.0, 0.0, 1).allowed
    assert rules.charge_rate(garbage, 1, 1, Limits(client_messages=1)).allowed
    assert rules.failures(garbage, 0.0, Limits()) == 0


def test_rates_count_messages_and_recipients() -> None:
    limits = Limits(client_messages=2, client_recipients=5)
    first = rules.charge_rate(None, 1, 3, limits)
    second = rules.charge_rate(first.record, 1, 3, limits)  # 6 recipients > 5
    assert first.allowed and not second.allowed
    second = rules.charge_rate(first.record, 1, 2, limits)
    assert second.allowed
    assert not rules.charge_rate(second.record, 1, 0, limits).allowed  # a third message
    assert rules.rate_key("4x1", 59.9) != rules.rate_key("4x1", 60.0)


def test_recipients_counted_at_rcpt_and_the_message_at_data() -> None:
    """SMTP counts each recipient alone at RCPT, then the message with none (defences #12)."""
    limits = Limits(client_messages=1, client_recipients=2)
    raw = None
    for _ in range(2):
        change = rules.charge_rate(raw, 0, 1, limits)
        assert change.allowed
        raw = change.record
    assert not rules.charge_rate(raw, 0, 1, limits).allowed  # the third RCPT
    message = rules.charge_rate(raw, 1, 0, limits)  # recipients at the limit: not judged
    assert message.allowed
    assert not rules.charge_rate(message.record, 1, 0, limits).allowed  # a second message
    # recipients alone never hit clientmessages, even when the minute's messages are spent
    assert not rules.charge_rate(message.record, 0, 1, limits).allowed  # still over 2
    assert rules.charge_rate(message.record, 0, 1, Limits(client_messages=1)).allowed


def test_failures_block_the_client_and_are_forgotten() -> None:
    limits = Limits(auth_failures=3, login_failures=5, auth_block=100.0)
    raw = None
    for n in range(1, 4):
        change = rules.add_failure(raw, now=float(n), limits=limits)
        assert change.count == n
        raw = change.record
    assert rules.failures(raw, 50.0, limits) == 3
    assert rules.login_blocked(3, 0, limits)
    assert rules.failures(raw, 103.0, limits) == 0  # authblock after the last failure
    assert not rules.login_blocked(0, 99, limits)  # a clean client may try a hot login name
    assert rules.login_blocked(1, 5, limits)
    assert not rules.login_blocked(99, 99, Limits(auth_failures=0, login_failures=0))


def test_the_delay_grows_and_is_bounded() -> None:
    limits = Limits(auth_delay=1.0)
    delays = [limits.failure_delay(n) for n in range(1, 30)]
    assert delays == sorted(delays) and delays[0] == 1.0 and delays[-1] == rules.MAX_DELAY
