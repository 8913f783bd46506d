"""smtproutes and qmtproutes (REMOTE-10, REMOTE-11, REMOTE-12, QMTP-30)."""

from __future__ import annotations

import pytest

from services.remote.routes import (
    MX,
    BadRoute,
    Relay,
    Route,
    choose_route,
    find_relay,
    lookup_keys,
    parse_relay,
)

ROUTES = (
    ("sink.test", "smtp-sink:2626"),
    (".corp.example", ""),
    ("corp.example", "[192.0.2.7]"),
    ("v6.test", "[2001:db8::1]:2526"),
    ("", "smarthost.example"),
)


def test_remote_10_lookup_keys_host_then_suffixes_longest_first_then_empty() -> None:
    assert lookup_keys("a.b.Example.TEST") == [
        "a.b.example.test",
        ".b.example.test",
        ".example.test",
        ".test",
        "",
    ]
    assert lookup_keys("localhost") == ["localhost", ""]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("sink.test", Route("smtp", Relay("smtp-sink", 2626, False))),
        ("SINK.test", Route("smtp", Relay("smtp-sink", 2626, False))),  # CTL-05
        ("corp.example", Route("smtp", Relay("192.0.2.7", 25, True))),
        ("mail.corp.example", MX),  # ".corp.example:" — explicitly not routed: MX
        ("deep.mail.corp.example", MX),
        ("v6.test", Route("smtp", Relay("2001:db8::1", 2526, True))),  # REMOTE-11
        ("anything.else", Route("smtp", Relay("smarthost.example", 25, False))),
        ("sub.sink.test", Route("smtp", Relay("smarthost.example", 25, False))),
    ],
)
def test_remote_10_the_first_key_present_decides(host: str, expected: Route) -> None:
    assert choose_route(host, ROUTES) == expected


def test_remote_10_without_routes_mail_goes_by_mx() -> None:
    assert choose_route("example.test", ()) == MX
    assert find_relay((), "example.test") is None


def test_remote_10_an_empty_catch_all_relay_means_mx() -> None:
    assert choose_route("x.test", (("", ""),)) == MX


def test_remote_10_a_later_line_with_the_same_key_wins_as_in_qmail() -> None:
    assert find_relay((("x.test", "first"), ("X.TEST", "second")), "x.test") == "second"


@pytest.mark.parametrize(
    ("text", "relay"),
    [
        ("relay.example", Relay("relay.example", 25, False)),
        ("relay.example:2626", Relay("relay.example", 2626, False)),
        ("192.0.2.1", Relay("192.0.2.1", 25, True)),
        ("192.0.2.1:26", Relay("192.0.2.1", 26, True)),
        ("[192.0.2.1]", Relay("192.0.2.1", 25, True)),
        ("[192.0.2.1]:2626", Relay("192.0.2.1", 2626, True)),
        ("[2001:db8::1]", Relay("2001:db8::1", 25, True)),
        ("[2001:DB8:0::1]:2626", Relay("2001:db8::1", 2626, True)),
        ("[IPv6:::1]:2626", Relay("::1", 2626, True)),
    ],
)
def test_remote_10_11_relay_forms(text: str, relay: Relay) -> None:
    assert parse_relay(text, 25) == relay


@pytest.mark.parametrize(
    "text",
    [
        ":2626",  # no host
        "relay.example:port",
        "relay.example:0",
        "relay.example:65536",
        "2001:db8::1",  # IPv6 must be bracketed (REMOTE-11)
        "[2001:db8::1",
        "[not-an-ip]:25",
        "[192.0.2.1]x",
    ],
)
def test_remote_10_unusable_relays_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(BadRoute, match="relay"):
        parse_relay(text, 25)


def test_qmtp_30_qmtproutes_first_with_port_209() -> None:
    qmtp = (("q.test", "qmtp-relay"), ("p.test", "[192.0.2.9]:2209"), ("s.test", ""))
    smtp = (("q.test", "smtp-relay"), ("s.test", "smtp-relay"))
    assert choose_route("q.test", smtp, qmtp) == Route("qmtp", Relay("qmtp-relay", 209, False))
    assert choose_route("p.test", smtp, qmtp) == Route("qmtp", Relay("192.0.2.9", 2209, True))
    # an empty qmtproutes relay does not select QMTP: smtproutes decides
    assert choose_route("s.test", smtp, qmtp) == Route("smtp", Relay("smtp-relay", 25, False))
    assert choose_route("other.test", smtp, qmtp) == MX
