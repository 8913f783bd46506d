"""From an address or login to an account of a namespace (SEND-16, POP3-05, LOCAL-58)."""

from __future__ import annotations

import pytest

from qmesh.directory.errors import InvalidName
from qmesh.directory.namespaces import Namespaces, Target, parse_address, parse_login, parse_target

NS = Namespaces.build(
    "mx.example.test",
    ["mx.example.test", "example.test"],
    [("virt.example.test", "carol"), ("joe@hosted.test", "joe"), (".wild.test", "w"), ("", "x")],
)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("bob", Target("mx.example.test", "bob")),  # bare name: canonical local domain
        ("Bob", Target("mx.example.test", "bob")),
        ("bob@example.test", Target("mx.example.test", "bob")),  # a locals alias
        ("bob@EXAMPLE.test", Target("mx.example.test", "bob")),
        ("alice@hosted.test", Target("hosted.test", "alice")),  # its own namespace
        ("alice@bücher.example", Target("xn--bcher-kva.example", "alice")),
        ("@hosted.test", Target("hosted.test", None)),  # a domain's own rules
    ],
)
def test_targets_map_to_namespaces(text: str, target: Target) -> None:
    assert parse_target(text, NS) == target


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("root", "root is never an account"),
        ("root@example.test", "root is never an account"),
        ("a..b@hosted.test", "'..'"),
        ("bob@bad_domain.test", "invalid domain name"),
        ("", "empty address"),
        ("@hosted.test", "names a domain, not an account"),
    ],
)
def test_bad_addresses_are_refused_naming_the_value(text: str, why: str) -> None:
    with pytest.raises(InvalidName, match=why):
        parse_address(text, NS)


def test_bare_name_without_canonical_domain_is_refused() -> None:
    with pytest.raises(InvalidName, match="no canonical local domain"):
        parse_address("bob", Namespaces.build(None, []))


def test_canonical_domain_from_me_counts_as_local() -> None:
    ns = Namespaces.build("mx.example.test", [])
    assert ns.locals == frozenset({"mx.example.test"})
    assert parse_address("bob", ns) == Target("mx.example.test", "bob")


@pytest.mark.parametrize(
    ("domain", "shadowed"),
    [
        ("mx.example.test", False),  # the canonical domain gets a record (LOCAL-56)
        ("example.test", True),  # another locals domain: never used
        ("virt.example.test", True),  # virtualdomains key 2
        ("hosted.test", True),  # virtualdomains key 1 (joe@hosted.test)
        ("other.test", False),
        ("a.wild.test", False),  # key 3 does not apply to directory domains (SEND-16)
    ],
)
def test_directory_domains_that_would_never_be_used_local58(domain: str, shadowed: bool) -> None:
    assert (NS.shadowed(domain) is not None) == shadowed


@pytest.mark.parametrize(
    ("login", "target"),
    [
        ("bob", Target("mx.example.test", "bob")),
        ("BOB@Example.Test", Target("mx.example.test", "bob")),
        ("alice@other.test", Target("other.test", "alice")),
        ("alice@BÜCHER.example", Target("xn--bcher-kva.example", "alice")),
        ("root", None),  # LOCAL-06
        ("root@other.test", None),
        ("info@virt.example.test", None),  # a virtualdomains domain names no account
        ("joe@hosted.test", None),  # nor a virtualdomains address
        ("a..b", None),
        ("", None),
        ("@other.test", None),
        ("bob@", None),
        ("bob@bad_domain", None),
        ("x" * 600, None),
    ],
)
def test_login_names_pop305(login: str, target: Target | None) -> None:
    assert parse_login(login, NS) == target


def test_login_bare_name_without_canonical_domain_names_nothing() -> None:
    assert parse_login("bob", Namespaces.build(None, [])) is None
