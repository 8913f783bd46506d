"""MTA-STS record and policy parsing, hostile input included (RFC 8461 sections 3.1, 3.2, 4.1)."""

from __future__ import annotations

import pytest

from qmesh.tlspolicy.mtasts import Policy, PolicyError, parse_policy, policy_id

GOOD = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    b"max_age: 604800\r\n"
)


@pytest.mark.parametrize(
    ("records", "ident"),
    [
        (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
        (["v=STSv1;id=abc"], "abc"),
        (["v=spf1 -all", "v=STSv1; id=1"], "1"),
        (["v=STSv1; id=1", "v=STSv1; id=2"], None),  # section 3.1: more than one: none
        (["v=STSv1"], None),
        (["v=STSv1; id="], None),
        (["v=STSv1; id=" + "a" * 33], None),
        (["v=STSv1; id=bad-id"], None),
        (["v=STSv10; id=1"], None),
        (["V=STSv1; id=1"], None),
        ([], None),
        (["\x00\xff"], None),
    ],
)
def test_policy_id(records: list[str], ident: str | None) -> None:
    assert policy_id(records) == ident


def test_good_policy() -> None:
    p = parse_policy(GOOD)
    assert p == Policy("enforce", ("mail.example.com", "*.example.net"), 604800)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("mail.example.com", True),
        ("MAIL.example.com.", True),
        ("x.example.net", True),
        ("a.b.example.net", False),  # section 4.1: the wildcard is one label
        ("example.net", False),
        ("evil-mail.example.com", False),
        ("mail.example.com.evil", False),
    ],
)
def test_mx_matching(host: str, allowed: bool) -> None:
    assert parse_policy(GOOD).allows(host) is allowed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"", "version"),
        (b"version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n", "version"),
        (b"version: STSv1\nmode: block\nmx: a.b\nmax_age: 1\n", "mode"),
        (b"version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"),
        (b"version: STSv1\nmode: enforce\nmx: a.b\n", "max_age"),
        (b"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n", "max_age"),
        (b"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 99999999999\n", "max_age"),
        (b"version: STSv1\nmode: enforce\nmx: *.*.b\nmax_age: 1\n", "mx pattern"),
        (b"version: STSv1\nmode: enforce\nmx: a b\nmax_age: 1\n", "mx pattern"),
        (b"version: STSv1\njust a line\n", "key: value"),
        (b"\xff\xfe", "UTF-8"),
        (b"version: STSv1\n" + b"x: y\n" * 20000, "64 KB"),
    ],
)
def test_bad_policies_are_not_used(text: bytes, reason: str) -> None:
    with pytest.raises(PolicyError, match=reason):
        parse_policy(text)


def test_max_age_is_capped_and_unknown_keys_ignored() -> None:
    p = parse_policy(b"version: STSv1\nmode: testing\nmx: a.test\nmax_age: 99999999\nnew: x\n")
    assert p.max_age == 31557600 and p.mode == "testing"
    assert parse_policy(b"version: STSv1\nmode: none\nmax_age: 0\n").mx == ()
