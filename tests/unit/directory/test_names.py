"""Account, domain and rule names (LOCAL-53, LOCAL-54, LOCAL-06, LOCAL-09, LOCAL-52)."""

from __future__ import annotations

import pytest

from qmesh.directory.errors import InvalidName, InvalidRule
from qmesh.directory.names import (
    check_account_name,
    domain_name,
    is_account_name,
    is_domain_name,
    rule_file_name,
    rule_name,
    safeext,
)


@pytest.mark.parametrize(
    "name",
    ["bob", "b", "0", "alice.smith", "a_b-c", "postmaster", "mailer-daemon", "a" * 64, "x.y.z"],
)
def test_account_names_accepted_local53(name: str) -> None:
    assert is_account_name(name)
    assert check_account_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("root", "root is never an account"),  # LOCAL-06
        ("a..b", "'..'"),
        (".bob", "begins with '.'"),
        ("-bob", "starting with a letter or digit"),
        ("_bob", "starting with a letter or digit"),
        ("Bob", "a-z"),
        ("bob smith", "a-z"),
        ("bob/x", "a-z"),
        ("bob@x", "a-z"),
        ("", "a-z"),
        ("a" * 65, "longer than 64"),
        ("bob.", "ends with '.'"),  # an empty KV key token
        ("böb", "a-z"),
    ],
)
def test_account_names_refused_with_reason_local53(name: str, why: str) -> None:
    assert not is_account_name(name)
    with pytest.raises(InvalidName, match="invalid account name") as err:
        check_account_name(name)
    assert why in str(err.value)
    assert repr(name) in str(err.value)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("example.test", "example.test"),
        ("Example.TEST", "example.test"),
        ("mx-1.example.test", "mx-1.example.test"),
        ("localhost", "localhost"),
        ("bücher.example", "xn--bcher-kva.example"),  # U-label -> A-label (UTS #46)
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ],
)
def test_domain_names_stored_lower_case_a_labels_local54(text: str, stored: str) -> None:
    assert domain_name(text) == stored
    assert is_domain_name(stored)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example..test",
        ".example.test",
        "example.test.",
        "under_score.test",
        "-lead.test",
        "trail-.test",
        "sp ace.test",
        "a/b.test",
        "[127.0.0.1]",
        "xn--zz.test",  # not a valid A-label
        ("a" * 64) + ".test",
        ".".join(["abcdefghi"] * 26),  # 259 octets
        "exa\x00mple.test",
    ],
)
def test_domain_names_refused_local54(text: str) -> None:
    with pytest.raises(InvalidName, match="invalid domain name"):
        domain_name(text)


def test_stored_form_is_exactly_lower_case_a_labels() -> None:
    assert not is_domain_name("Example.test")
    assert not is_domain_name("bücher.example")


@pytest.mark.parametrize(
    ("ext", "safe"),
    [
        ("P.D.Q.Bach", "p:d:q:bach"),  # the spec's example
        ("Foo-Bar", "foo-bar"),
        ("", ""),
        ("ÄB.c", "Äb:c"),  # only ASCII is folded
    ],
)
def test_safeext_local09(ext: str, safe: str) -> None:
    assert safeext(ext) == safe


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        (".qmail", ""),
        (".qmail-Foo.Bar", "foo:bar"),
        (".qmail-default", "default"),
        (".qmail-foo-default", "foo-default"),
        (".qmail-owner", "owner"),
        ("Foo.Bar", "foo:bar"),
        ("postmaster", "postmaster"),
        (".qmail-foo:bar", "foo:bar"),  # as shown back by rule show
    ],
)
def test_rule_names_map_to_safeext_local52(text: str, stored: str) -> None:
    assert rule_name(text) == stored


@pytest.mark.parametrize("text", ["", ".qmail-", ".forward", ".qmailfoo", "a b", "a/b", "x\ny"])
def test_rule_names_refused(text: str) -> None:
    with pytest.raises(InvalidRule, match="rule name"):
        rule_name(text)


@pytest.mark.parametrize(("stored", "shown"), [("", ".qmail"), ("foo:bar", ".qmail-foo:bar")])
def test_rule_names_are_shown_as_qmail_file_names(stored: str, shown: str) -> None:
    assert rule_file_name(stored) == shown
    assert rule_name(shown) == stored
