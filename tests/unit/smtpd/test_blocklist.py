"""The ``dnsbl`` control, RFC 5782 query names and rblsmtpd's answers (defences #12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmesh.control import ControlError
from services.smtpd.blocklist import Zone, clean_text, listed, parse_zones, query_name, refusal


def test_zones_with_text_and_permanence() -> None:
    assert parse_zones(("zen.Example.org.", "bl.test:Go away: now", "!perm.test")) == (
        Zone("zen.example.org"),
        Zone("bl.test", "Go away: now"),
        Zone("perm.test", permanent=True),
    )


@pytest.mark.parametrize("bad", ["", "localhost", "a..b", "bad zone.test", "x/y.test", "é.test"])
def test_a_zone_that_is_not_one_stops_startup(bad: str) -> None:
    with pytest.raises(ControlError):
        parse_zones((bad,))


@pytest.mark.parametrize(
    ("ip", "name"),
    [
        ("192.0.2.99", "99.2.0.192.bl.test"),
        ("::ffff:192.0.2.99", "99.2.0.192.bl.test"),
        ("2001:db8:1:2:3:4:567:89ab",
         "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test"),
        ("not an address", None),
    ],
)  # fmt: skip
def test_rfc_5782_query_names(ip: str, name: str | None) -> None:
    assert query_name(ip, Zone("bl.test")) == name


def test_only_127_8_answers_list_and_not_the_lists_error_codes() -> None:
    assert listed(["127.0.0.2"]) and listed(["10.0.0.1", "127.0.0.4"])
    assert not listed(["127.255.255.254"]) and not listed(["192.0.2.1", "x", "::1"])


def test_refusals_are_451_unless_permanent() -> None:
    assert refusal(Zone("bl.test"), "see\r\nhttps://x").smtp() == "451 4.7.1 see https://x"
    assert refusal(Zone("bl.test", "own"), "txt").smtp() == "451 4.7.1 own"
    assert refusal(Zone("p.test", permanent=True), "").smtp() == (
        "553 5.7.1 your address is listed by p.test"
    )


@given(st.text())
def test_hostile_txt_never_breaks_the_reply_line(txt: str) -> None:
    text = clean_text(txt)
    assert len(text) <= 200 and all(" " <= c <= "~" for c in text)
    assert "\r" not in refusal(Zone("bl.test"), txt).smtp()
