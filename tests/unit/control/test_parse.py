"""The reading rules of spec 2.1 on plain text (CTL-02, CTL-03, CTL-04, CTL-05)."""

from __future__ import annotations

import ipaddress
import re

import pytest

from qmesh.control import parse
from qmesh.control.parse import ControlError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mx.example.test\n", "mx.example.test"),  # CTL-02 newline removed
        ("mx.example.test \t \n", "mx.example.test"),  # CTL-02 trailing spaces and tabs
        ("mx.example.test", "mx.example.test"),  # no final newline
        ("first\nsecond\n", "first"),  # CTL-02 only the first line
        ("  indented\n", "  indented"),  # leading spaces stay
        ("\nsecond\n", ""),  # an empty first line is empty (BOUNCE-11 relies on it)
        ("crlf\r\n", "crlf"),
    ],
)
def test_ctl02_first_line(text: str, expected: str) -> None:
    assert parse.first_line(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000\n", 1000),
        ("1000 bytes\n", 1000),  # CTL-03 unsigned decimal prefix
        ("1000000\n2\n", 1000000),  # first line only
        ("0\n", 0),
        ("007\n", 7),
        ("abc\n", 55),  # CTL-03 garbage keeps the default
        ("-5\n", 55),  # unsigned: a sign is not a digit
        (" 10\n", 55),  # the line must start with a digit
        ("", 55),
        ("\n10\n", 55),
    ],
)
def test_ctl03_number(text: str, expected: int) -> None:
    assert parse.number("databytes", text, 55) == expected


@pytest.mark.parametrize("text", ["2e+06\n", "1.5\n", "12abc\n", "2,000,000\n", "10#x\n"])
def test_digits_running_into_other_characters_are_refused(text: str) -> None:
    """chart #3: qmail would read 2e+06 as 2; a number is refused rather than misread."""
    with pytest.raises(ControlError, match=r"control/databytes line 1: '.*' is not a whole number"):
        parse.number("databytes", text, 55)


@pytest.mark.parametrize("value", ["2000000", " 2000000 ", "0"])
def test_env_number_reads_digits(value: str) -> None:
    assert parse.env_number("DATABYTES", "databytes", value) == int(value)


@pytest.mark.parametrize("value", ["2e+06", "12abc", "1.5", "", "-1", "1000 bytes"])
def test_env_number_refuses_anything_else_naming_the_variable(value: str) -> None:
    """chart #3: DATABYTES=2e+06 made smtpd advertise SIZE 2 and refuse every message."""
    with pytest.raises(
        ControlError, match=re.escape(f"environment DATABYTES={value!r} is not a number")
    ):
        parse.env_number("DATABYTES", "databytes", value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.test\nb.test\n", ["a.test", "b.test"]),
        ("a.test  \t\nb.test\t\n", ["a.test", "b.test"]),  # CTL-04 trailing whitespace
        ("# comment\na.test\n#b.test\n", ["a.test"]),  # CTL-04 comments
        ("\n\na.test\n\n", ["a.test"]),  # CTL-04 empty lines
        ("   \na.test\n", ["a.test"]),  # blank after trimming = empty
        (" a.test\n", [" a.test"]),  # CTL-04 leading spaces kept
        (" # not a comment\n", [" # not a comment"]),  # '#' must be the first character
        ("a.test", ["a.test"]),  # no final newline
    ],
)
def test_ctl04_list_entries(text: str, expected: list[str]) -> None:
    assert [entry for _, entry in parse.entries(text)] == expected


def test_ctl04_entries_carry_their_line_numbers() -> None:
    assert list(parse.entries("# c\n\nx\ny\n")) == [(3, "x"), (4, "y")]


def test_ctl05_domain_lists_are_lower_cased_for_matching() -> None:
    assert parse.domains("Example.TEST\n.Sub.Example.test\n") == {
        "example.test",
        ".sub.example.test",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("virt.example.test:carol\n", (("virt.example.test", "carol"),)),
        ("user@x.test:alice\n", (("user@x.test", "alice"),)),
        (".corp.test:\n", ((".corp.test", ""),)),  # empty value: an exception (SEND-13)
        (":smarthost.test\n", (("", "smarthost.test"),)),  # catch-all
        ("sink.test:smtp-sink:2626\n", (("sink.test", "smtp-sink:2626"),)),  # first colon
        ("v6.test:[2001:db8::1]:2626\n", (("v6.test", "[2001:db8::1]:2626"),)),  # REMOTE-11
    ],
)
def test_pairs_split_at_the_first_colon(text: str, expected: object) -> None:
    assert parse.pairs("smtproutes", text) == expected


def test_pairs_without_colon_name_file_and_line() -> None:
    with pytest.raises(ControlError) as info:
        parse.pairs("virtualdomains", "# c\na.test:x\nb.test\n")
    assert info.value.control == "virtualdomains"
    assert info.value.line == 3
    assert str(info.value).startswith("control/virtualdomains line 3: ")


N = ipaddress.ip_network


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.0/8\n", ((N("10.0.0.0/8"), ""),)),
        ("10.0.0.0/8:\n", ((N("10.0.0.0/8"), ""),)),
        ("10.0.0.0/8:+ext\n", ((N("10.0.0.0/8"), "+ext"),)),
        ("192.0.2.7\n", ((N("192.0.2.7/32"), ""),)),
        ("192.0.2.7:x\n", ((N("192.0.2.7/32"), "x"),)),
        ("2001:db8::/32\n", ((N("2001:db8::/32"), ""),)),
        ("2001:db8::/32:v\n", ((N("2001:db8::/32"), "v"),)),
        ("[2001:db8::/32]:v\n", ((N("2001:db8::/32"), "v"),)),
        ("[2001:db8::1]\n", ((N("2001:db8::1/128"), ""),)),
        ("2001:db8::1\n", ((N("2001:db8::1/128"), ""),)),
        ("10.1.2.3/8\n", ((N("10.0.0.0/8"), ""),)),  # host bits are dropped
    ],
)
def test_relayclients_lines(text: str, expected: object) -> None:
    assert parse.relayclients("relayclients", text) == expected


@pytest.mark.parametrize(
    "text", ["10.0.0.0/33\n", "example.test\n", " 10.0.0.0/8\n", "[2001:db8::/32\n"]
)
def test_relayclients_bad_cidr_names_file_and_line(text: str) -> None:
    with pytest.raises(ControlError, match=r"control/relayclients line 1: .* IP address or CIDR"):
        parse.relayclients("relayclients", text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1\n", True), ("0\n", False), ("1  \n", True)],
)
def test_flag(text: str, expected: bool) -> None:
    assert parse.flag("rcptcheck", text) is expected


@pytest.mark.parametrize("text", ["yes\n", "", "2\n", "10\n", "true\n"])
def test_flag_outside_its_closed_set_is_an_error(text: str) -> None:
    with pytest.raises(ControlError, match=r"control/rcptcheck line 1: expected 0 or 1"):
        parse.flag("rcptcheck", text)


def test_addresses_are_canonical_and_checked() -> None:
    assert parse.addresses("ipme", "203.0.113.5\n2001:DB8:0::1\n[192.0.2.1]\n") == (
        "203.0.113.5",
        "2001:db8::1",
        "192.0.2.1",
    )
    with pytest.raises(ControlError, match=r"control/ipme line 2: 'mx.test' is not an IP"):
        parse.addresses("ipme", "203.0.113.5\nmx.test\n")


def test_mechanisms_and_ports_accept_words_or_lines() -> None:
    assert parse.mechanisms("smtpauth", "plain login\nPLAIN\n") == ("PLAIN", "LOGIN")
    assert parse.mechanisms("smtpauth", "# none\n") == ()
    assert parse.ports("submissionports", "587, 465\n2587\n") == (587, 465, 2587)
    with pytest.raises(ControlError, match=r"control/smtpauth line 1: 'pl@in'"):
        parse.mechanisms("smtpauth", "pl@in\n")
    with pytest.raises(ControlError, match=r"control/submissionports line 1: '70000'"):
        parse.ports("submissionports", "70000\n")
