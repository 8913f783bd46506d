"""Account lookup and rule search (LOCAL-03, LOCAL-04, LOCAL-10, LOCAL-12, LOCAL-14, LOCAL-22)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from qmesh.contract.errors import Permanent, Temporary
from qmesh.directory.records import Vacation
from services.local.resolve import (
    NO_DOMAIN,
    NO_MAILBOX,
    Candidate,
    RuleChoice,
    Target,
    candidates,
    find_rule,
    has_rule,
    newsender,
    search_order,
    target,
)

DEFAULT_DELIVERY = "./Maildir/\n"


@dataclass(frozen=True)
class Domain:
    rules: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True)
class Account:
    name: str
    rules: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True
    quota: int | None = None
    vacation: Vacation | None = None


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        # LOCAL-03's example: the whole local part first, then the part before the '-'
        ("Bob-Foo.Bar", [("bob-foo.bar", "", ""), ("bob", "-", "Foo.Bar")]),
        ("bob", [("bob", "", "")]),
        ("a-b-c", [("a-b-c", "", ""), ("a-b", "-", "c"), ("a", "-", "b-c")]),
        ("bob-", [("bob-", "", ""), ("bob", "-", "")]),
        ("BOB", [("bob", "", "")]),
        # root is never an account (LOCAL-06), nor anything LOCAL-53 refuses
        ("root", []),
        ("root-x", [("root-x", "", "")]),
        ("-bob", []),
        (".bob-x", []),
        ("a..b", []),
        ("bob smith", []),
        ("Ünï-bob", []),
        ("x" * 65, []),
        ("x" * 64, [("x" * 64, "", "")]),
        ("x" * 70 + "-" + "y", []),
        ("bob-" + "x" * 70, [("bob", "-", "x" * 70)]),
    ],
)
def test_candidates_longest_first_case_preserving_ext(
    local: str, expected: list[tuple[str, str, str]]
) -> None:
    """LOCAL-03: prefixes ending at the end or before a '-', at most 64, valid names only."""
    assert [(c.name, c.dash, c.ext) for c in candidates(local)] == expected


@pytest.mark.parametrize(
    ("ext", "expected"),
    [
        ("foo-bar", [("foo-bar", None), ("foo-default", "bar"), ("default", "foo-bar")]),
        ("a-", [("a-", None), ("a-default", ""), ("default", "a-")]),
        ("", [("default", "")]),
        ("Foo-Bar", [("foo-bar", None), ("foo-default", "Bar"), ("default", "Foo-Bar")]),
        ("P.D.Q.Bach", [("p:d:q:bach", None), ("default", "P.D.Q.Bach")]),
        (
            "a-b-c",
            [("a-b-c", None), ("a-b-default", "c"), ("a-default", "b-c"), ("default", "a-b-c")],
        ),
        # an exact name ending in "default" sets DEFAULT too (qmail-local's qmesearch)
        ("x-Default", [("x-default", "Default"), ("default", "x-Default")]),
        ("default", [("default", "default")]),
    ],
)
def test_search_order(ext: str, expected: list[tuple[str, str | None]]) -> None:
    """LOCAL-09, LOCAL-10: exact safeext, then each -default from the right, then default."""
    assert list(search_order(ext)) == expected


def account_target(rules: Mapping[str, str], dash: str = "-", ext: str = "") -> Target:
    return Target("bob", rules, dash, ext)


@pytest.mark.parametrize(
    ("rules", "dash", "ext", "expected"),
    [
        ({"": "&x@y.test\n"}, "", "", RuleChoice("", "&x@y.test\n", None)),
        ({}, "", "", RuleChoice(None, DEFAULT_DELIVERY, None)),  # LOCAL-12
        ({"": ""}, "", "", RuleChoice("", DEFAULT_DELIVERY, None)),  # LOCAL-14
        ({"foo-bar": "#\n"}, "-", "Foo-Bar", RuleChoice("foo-bar", "#\n", None)),
        ({"foo-default": "#\n"}, "-", "foo-Bar", RuleChoice("foo-default", "#\n", "Bar")),
        ({"default": "./Maildir/"}, "-", "x", RuleChoice("default", "./Maildir/", "x")),
        ({"default": ""}, "-", "x", RuleChoice("default", DEFAULT_DELIVERY, "x")),
        # dash empty uses only rule "" (not default)
        ({"default": "#\n"}, "", "", RuleChoice(None, DEFAULT_DELIVERY, None)),
        # local part "bob-": the exact name would be "", so straight to default
        ({"": "#\n", "default": "&a@b.test"}, "-", "", RuleChoice("default", "&a@b.test", "")),
    ],
)
def test_find_rule(rules: dict[str, str], dash: str, ext: str, expected: RuleChoice) -> None:
    assert find_rule(account_target(rules, dash, ext), DEFAULT_DELIVERY) == expected


@pytest.mark.parametrize(
    ("rules", "ext"),
    [({}, "x"), ({"": "./Maildir/"}, ""), ({"foo": "#"}, "foo-bar"), ({"bar": "#"}, "foo-bar")],
)
def test_no_rule_with_dash_is_no_mailbox(rules: dict[str, str], ext: str) -> None:
    """LOCAL-12: dash '-' and no candidate: D 5.1.1."""
    with pytest.raises(Permanent) as err:
        find_rule(account_target(rules, "-", ext), DEFAULT_DELIVERY)
    assert err.value.text == NO_MAILBOX


def test_account_wins_over_domain_rules() -> None:
    domain = Domain({"default": "&x@y.test"})
    found = (Candidate("bob", "-", "Foo"), Account("bob", {"foo": "#"}, quota=100))
    assert target("Bob-Foo", domain, found) == Target("bob", {"foo": "#"}, "-", "Foo", 100)


def test_no_account_falls_to_domain_rules_with_whole_local_part_as_ext() -> None:
    """LOCAL-04: dash '-', ext = the whole local part, user 'alias'."""
    t = target("Postmaster", Domain({"postmaster": "&a@b.test"}), None)
    assert (t.account, t.user, t.dash, t.ext) == (None, "alias", "-", "Postmaster")
    assert find_rule(t, DEFAULT_DELIVERY).name == "postmaster"


def test_no_domain_record_is_temporary() -> None:
    """LOCAL-04: Z Unable to find domain record."""
    with pytest.raises(Temporary) as err:
        target("nobody", None, None)
    assert err.value.text == NO_DOMAIN


def test_account_without_domain_record_still_delivers() -> None:
    found = (Candidate("bob", "", ""), Account("bob"))
    assert target("bob", None, found).account == "bob"


def test_disabled_domain_has_no_accounts_and_no_rules() -> None:
    """LOCAL-51: every address of a disabled domain gets 5.1.1."""
    domain = Domain({"default": "&x@y.test"}, enabled=False)
    t = target("bob", domain, (Candidate("bob", "", ""), Account("bob")))
    assert t.account is None
    with pytest.raises(Permanent):
        find_rule(t, DEFAULT_DELIVERY)


@pytest.mark.parametrize(
    ("t", "valid"),
    [
        (Target("bob", {}, "", ""), True),  # the account itself: default delivery
        (Target("bob", {"foo": "#"}, "-", "foo"), True),
        (Target("bob", {"foo": "#"}, "-", "bar"), False),
        (Target(None, {"sales": "&a@b.test"}, "-", "Sales"), True),
        (Target(None, {"default": "&a@b.test"}, "-", "anything"), True),
        (Target(None, {}, "-", "nobody"), False),
    ],
)
def test_has_rule_is_what_rcptcheck_answers(t: Target, valid: bool) -> None:
    """LOCAL-34, SMTPD-45: valid iff the lookups of LOCAL-03/04/10 find something."""
    assert has_rule(t) is valid


@pytest.mark.parametrize(
    ("sender", "local", "rules", "dash", "ext", "expected"),
    [
        ("a@b.test", "bob-list", {}, "-", "list", "a@b.test"),
        ("a@b.test", "bob-list", {"list-owner": "#"}, "-", "list", "bob-list-owner@mx.test"),
        (
            "a@b.test",
            "bob-list",
            {"list-owner": "#", "list-owner-default": "#"},
            "-",
            "list",
            "bob-list-owner-@mx.test-@[]",
        ),
        ("", "bob-list", {"list-owner": "#"}, "-", "list", ""),
        ("#@[]", "bob-list", {"list-owner": "#"}, "-", "list", "#@[]"),
        ("a@b.test", "bob", {"owner": "#"}, "", "", "bob-owner@mx.test"),
        # the rule name is in safeext form; the new sender keeps the local part's case
        (
            "a@b.test",
            "Bob-List.X",
            {"list:x-owner": "#"},
            "-",
            "List.X",
            "Bob-List.X-owner@mx.test",
        ),
    ],
)
def test_newsender(
    sender: str, local: str, rules: dict[str, str], dash: str, ext: str, expected: str
) -> None:
    """LOCAL-22: NEWSENDER from rule <safeext>-owner (owner when dash is empty)."""
    assert newsender(sender, local, "mx.test", Target("bob", rules, dash, ext)) == expected
