"""Command parsing, byte-stuffing and TOP's header/body split (POP3-15, POP3-16, POP3-24)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmesh.store.maildir import pop3_size
from services.pop3d.protocol import Command, parse_command, parse_number, stuff, top


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"USER alice\r\n", Command("USER", "alice")),
        (b"user   alice\n", Command("USER", "alice")),
        (b"PASS two words \r\n", Command("PASS", "two words ")),
        (b"stat\r\n", Command("STAT", "")),
        (b"TOP 1 10\r\n", Command("TOP", "1 10")),
        (b"PASS caf\xc3\xa9\r\n", Command("PASS", "café")),
        (b"NOOP", Command("NOOP", "")),
    ],
)
def test_parse_command_pop3_24(line: bytes, command: Command) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("arg", "number"),
    [("1", 1), ("007", 7), ("", None), ("x", None), ("-1", None), ("1 ", None), ("\u0661", None)],
)
def test_parse_number_pop3_18(arg: str, number: int | None) -> None:
    assert parse_number(arg) == number


@pytest.mark.parametrize(
    ("content", "wire"),
    [
        (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
        (b".\n..x\n", b"..\r\n...x\r\n.\r\n"),
        (b"no final newline", b"no final newline\r\n.\r\n"),
        (b"", b".\r\n"),
        (b"\n\n", b"\r\n\r\n.\r\n"),
    ],
)
def test_stuff_pop3_15(content: bytes, wire: bytes) -> None:
    assert stuff(content) == wire


@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")), max_size=20))
def test_retr_sends_exactly_the_rfc1939_size_pop3_11(lines: list[bytes]) -> None:
    content = b"".join(line + b"\n" for line in lines)
    wire = stuff(content)
    unstuffed = b"".join(
        (line[1:] if line.startswith(b".") else line) + b"\r\n"
        for line in wire[: -len(b".\r\n")].split(b"\r\n")[:-1]
    )
    assert len(unstuffed) == pop3_size(content)
    assert unstuffed.replace(b"\r\n", b"\n") == content


MESSAGE = b"From: a\nSubject: b\n\none\ntwo\nthree\n"


@pytest.mark.parametrize(
    ("content", "k", "part"),
    [
        (MESSAGE, 0, b"From: a\nSubject: b\n\n"),
        (MESSAGE, 2, b"From: a\nSubject: b\n\none\ntwo\n"),
        (MESSAGE, 99, MESSAGE),
        (b"all\nheader\n", 3, b"all\nheader\n"),
        (b"\nbody only\nmore\n", 1, b"\nbody only\n"),
        (b"H: x\n\nlast line without newline", 5, b"H: x\n\nlast line without newline"),
    ],
)
def test_top_pop3_16(content: bytes, k: int, part: bytes) -> None:
    assert top(content, k) == part
