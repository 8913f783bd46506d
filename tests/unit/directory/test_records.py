"""Directory records are validated on every read, as untrusted input (LOCAL-50..52, ARCH-22)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from qmesh.directory.passwords import HashParams, hash_password
from qmesh.directory.records import AccountRecord, DomainRecord, account_key, domain_key

CHEAP = HashParams(time_cost=1, memory_kib=8, parallelism=1)


def test_keys_follow_section_1_4() -> None:
    assert domain_key("example.test") == "domain.example.test"
    assert account_key("example.test", "bob") == "account.example.test.bob"
    assert AccountRecord(domain="example.test", name="bob").key == "account.example.test.bob"
    assert DomainRecord(name="example.test").key == "domain.example.test"


def test_records_round_trip() -> None:
    account = AccountRecord(
        domain="example.test",
        name="bob",
        verifier=hash_password("pw", CHEAP),
        quota=10_000,
        rules={"": "./Maildir/\n", "foo:bar": "&a@b.example\n"},
    )
    assert AccountRecord.decode(account.encode()) == account
    domain = DomainRecord(name="example.test", rules={"postmaster": "&bob@example.test\n"})
    assert DomainRecord.decode(domain.encode()) == domain
    assert json.loads(domain.encode())["kind"] == "qmesh.domain.v1"
    assert json.loads(account.encode())["kind"] == "qmesh.account.v1"


def test_verifier_is_not_in_the_repr_local59() -> None:
    account = AccountRecord(domain="example.test", name="bob", verifier=hash_password("pw", CHEAP))
    assert "argon2" not in repr(account)


@pytest.mark.parametrize(
    "change",
    [
        {"name": "root"},
        {"name": "../x"},
        {"domain": "Example.test"},
        {"domain": "bücher.example"},
        {"verifier": "plaintext-password"},
        {"quota": 0},
        {"quota": -1},
        {"rules": {"Foo.Bar": "x@y.example\n"}},  # not in safeext form
        {"rules": {"a/b": "x@y.example\n"}},
        {"rules": {"x": "a\0b"}},
        {"kind": "qmesh.account.v2"},
        {"surprise": 1},
    ],
)
def test_tampered_account_records_are_refused_arch22(change: dict[str, object]) -> None:
    doc = {"kind": "qmesh.account.v1", "domain": "example.test", "name": "bob"} | change
    with pytest.raises(ValidationError):
        AccountRecord.decode(json.dumps(doc).encode())


def test_changed_revalidates() -> None:
    record = DomainRecord(name="example.test")
    assert record.changed(enabled=False).enabled is False
    with pytest.raises(ValidationError):
        record.changed(rules={"BAD": "x"})
