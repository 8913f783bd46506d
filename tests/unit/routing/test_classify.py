"""SEND-10..SEND-17: where a recipient goes, with the reference profile's controls."""

from __future__ import annotations

import pytest

from qmesh.routing.classify import Local, Remote, RoutingRules, classify, is_hosted

PROFILE = RoutingRules.build(
    envnoathost="mx.example.test",
    percenthack=["example.test"],
    locals=["mx.example.test", "example.test"],
    virtualdomains=[("virt.example.test", "carol")],
)
DIRECTORY = {"mx.example.test", "hosted.test"}


@pytest.mark.parametrize(
    ("address", "route"),
    [
        # SEND-10 envnoathost
        (
            "postmaster",
            Local("postmaster@mx.example.test", "mx.example.test", "postmaster@mx.example.test"),
        ),
        # SEND-12 locals: every locals domain is the canonical namespace (SEND-16)
        (
            "alice@example.test",
            Local("alice@example.test", "mx.example.test", "alice@example.test"),
        ),
        (
            "Alice@MX.Example.Test",
            Local("Alice@MX.Example.Test", "mx.example.test", "Alice@MX.Example.Test"),
        ),
        # SEND-13 virtualdomains: prepend, canonical domain; original kept (BOUNCE-07)
        (
            "info@virt.example.test",
            Local("carol-info@mx.example.test", "mx.example.test", "info@virt.example.test"),
        ),
        # SEND-16 directory domain: its own namespace, address unchanged
        ("alice@Hosted.Test", Local("alice@Hosted.Test", "hosted.test", "alice@Hosted.Test")),
        # SEND-11 percenthack then remote
        ("user%victim.example@example.test", Remote("user@victim.example")),
        ("bob@elsewhere.example", Remote("bob@elsewhere.example")),
    ],
)
def test_send_10_to_16_classification(address: str, route: Local | Remote) -> None:
    assert classify(address, PROFILE, DIRECTORY) == route


def test_send_11_percenthack_repeats_while_domain_listed() -> None:
    rules = RoutingRules.build(
        envnoathost="gw", percenthack=["gw", "c"], locals=["l.test"], virtualdomains=[]
    )
    assert classify("a%b%c@gw", rules, set()) == Remote("a@b")


def test_send_13_exception_line_and_suffixes() -> None:
    rules = RoutingRules.build(
        envnoathost="l.test",
        percenthack=[],
        locals=["l.test"],
        virtualdomains=[
            ("joe@v.test", "joe"),
            (".v.test", "sub"),
            ("x.v.test", ""),
            ("", "catchall"),
        ],
    )
    assert classify("joe@v.test", rules, set()) == Local("joe-joe@l.test", "l.test", "joe@v.test")
    assert classify("a@b.v.test", rules, set()) == Local("sub-a@l.test", "l.test", "a@b.v.test")
    assert classify("a@x.v.test", rules, set()) == Remote("a@x.v.test")  # empty prepend
    assert classify("a@other.test", rules, set()) == Local(
        "catchall-a@l.test", "l.test", "a@other.test"
    )
    # a directory domain is local in its own namespace: keys 3 and 4 do not apply (SEND-16)
    assert classify("a@dir.test", rules, {"dir.test"}) == Local(
        "a@dir.test", "dir.test", "a@dir.test"
    )


@pytest.mark.parametrize(
    ("domain", "hosted"),
    [
        ("example.test", True),
        ("virt.example.test", True),
        ("hosted.test", True),
        ("elsewhere.example", False),
    ],
)
def test_send_17_hosted_domains(domain: str, hosted: bool) -> None:
    assert is_hosted(domain, PROFILE, DIRECTORY) is hosted


def test_send_14_matching_ignores_case_addresses_keep_theirs() -> None:
    rules = RoutingRules.build(
        envnoathost="L.Test",
        percenthack=["GW.Test"],
        locals=["L.Test"],
        virtualdomains=[("V.Test", "Virt"), ("Joe@X.Test", "joe")],
    )
    assert classify("Bob@l.TEST", rules, set()) == Local("Bob@l.TEST", "l.test", "Bob@l.TEST")
    assert classify("Ann@v.test", rules, set()) == Local("Virt-Ann@l.test", "l.test", "Ann@v.test")
    assert classify("JOE@x.test", rules, set()) == Local("joe-JOE@l.test", "l.test", "JOE@x.test")
    assert classify("Kim%Far.Test@gw.test", rules, set()) == Remote("Kim@Far.Test")
    assert classify("Eve@Dir.Test", rules, {"dir.test"}) == Local(
        "Eve@Dir.Test", "dir.test", "Eve@Dir.Test"
    )
