"""SMTP transparency of the stored form (REMOTE-35, REMOTE-36)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.remote.encode import DataEncoder, encode_data


@pytest.mark.parametrize(
    ("stored", "wire"),
    [
        (b"a\nb\n", b"a\r\nb\r\n.\r\n"),  # LF becomes CR LF
        (b"a\r\nb\n", b"a\r\nb\r\n.\r\n"),  # a stored CR LF is one CR LF
        (b".\n", b"..\r\n.\r\n"),  # a lone dot line is stuffed
        (b"a\n.b\n..c\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
        (b"x\r.\n", b"x\r\n..\r\n.\r\n"),  # REMOTE-36: bare CR breaks; the next line is stuffed
        (b"x\ry\n", b"x\r\ny\r\n.\r\n"),
        (b"x\r\r\n", b"x\r\n\r\n.\r\n"),
        (b"a\nlast", b"a\r\nlast\r\n.\r\n"),  # REMOTE-35 [MODERN]: partial last line completed
        (b".partial", b"..partial\r\n.\r\n"),
        (b"x\r", b"x\r\n.\r\n"),  # a final bare CR is the line break
        (b"", b".\r\n"),
        (b"\n", b"\r\n.\r\n"),
        (b"caf\xc3\xa9 \xff\n", b"caf\xc3\xa9 \xff\r\n.\r\n"),  # no 8-bit conversion
        (b"x" * 2000 + b"\n", b"x" * 2000 + b"\r\n.\r\n"),  # no line wrapping
    ],
)
def test_remote_35_36_stored_form_on_the_wire(stored: bytes, wire: bytes) -> None:
    assert encode_data(stored) == wire


@pytest.mark.parametrize(
    "chunks",
    [
        [b"x\r", b".\n"],  # a CR at a chunk's end waits for what follows
        [b"x\r", b"\n.y\n"],
        [b"a\n", b".b\n"],  # a dot at the start of a chunk after a line break
        [b"a", b"\n", b".", b"\n"],
        [b"\r", b"\r", b"\n"],
    ],
)
def test_remote_35_chunk_boundaries_change_nothing(chunks: list[bytes]) -> None:
    assert encode_data(chunks) == encode_data(b"".join(chunks))


@given(st.binary(max_size=200), st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_remote_36_never_a_bare_cr_or_lf_and_never_an_early_end(
    stored: bytes, cuts: list[int]
) -> None:
    points = sorted({min(c, len(stored)) for c in cuts})
    pieces = [stored[a:b] for a, b in zip([0, *points], [*points, len(stored)], strict=True)]
    wire = encode_data(pieces)
    assert wire == encode_data(stored)
    body = wire[: -len(b".\r\n")]
    assert body.count(b"\r") == body.count(b"\n") == body.count(b"\r\n")
    assert b"\r\n.\r\n" not in b"\r\n" + body  # the data cannot end before the real end
    # undoing the stuffing gives back the lines of the stored form
    lines = body.split(b"\r\n")[:-1] if body else []
    unstuffed = [line[1:] if line.startswith(b".") else line for line in lines]
    normalised = stored.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    expected = normalised.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert unstuffed == expected


def test_remote_35_finish_resets_for_an_encoder_used_once() -> None:
    encoder = DataEncoder()
    assert encoder.feed(b"a") == b"a"
    assert encoder.finish() == b"\r\n.\r\n"
