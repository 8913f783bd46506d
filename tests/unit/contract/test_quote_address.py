"""ADDR-07: quoting of addresses on output (SMTP, Return-Path, bounce To:)."""

from __future__ import annotations

import pytest

from qmesh.contract.envelope import quote_address


@pytest.mark.parametrize(
    ("address", "plain", "utf8"),
    [
        ("", "", ""),
        ("bob@example.test", "bob@example.test", "bob@example.test"),
        ("@example.test", '""@example.test', '""@example.test'),
        ("a b@x", '"a b"@x', '"a b"@x'),
        ("a.b@x", "a.b@x", "a.b@x"),
        (".a@x", '".a"@x', '".a"@x'),
        ("a.@x", '"a."@x', '"a."@x'),
        ("a..b@x", '"a..b"@x', '"a..b"@x'),
        ('a"b@x', '"a\\"b"@x', '"a\\"b"@x'),
        ("a\\b@x", '"a\\\\b"@x', '"a\\\\b"@x'),
        ("a\rb@x", '"a\\\rb"@x', '"a\\\rb"@x'),
        ("a\nb@x", '"a\\\nb"@x', '"a\\\nb"@x'),
        ("jörg@x", '"jörg"@x', "jörg@x"),  # [MODERN] SMTPUTF8: valid UTF-8 needs no quotes
        ("j\udcf6rg@x", '"j\udcf6rg"@x', '"j\udcf6rg"@x'),  # a byte that is not UTF-8
        ("a@b@c", '"a@b"@c', '"a@b"@c'),  # the last @ separates
        ("#@[]", "#@[]", "#@[]"),
        ("postmaster", "postmaster", "postmaster"),
        ("user@dom ain", "user@dom ain", "user@dom ain"),  # the domain is never quoted
    ],
)
def test_quote_address(address: str, plain: str, utf8: str) -> None:
    assert quote_address(address) == plain
    assert quote_address(address, smtputf8=True) == utf8
