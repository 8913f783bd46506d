"""The DATA state machine: SMTPD-51 (end of data, transparency, smuggling), -52, -53, -55."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.smtpd.data import LOOPING, NUL, TOO_BIG, DataReader


def run(data: bytes, *, databytes: int = 0, split: int = 0) -> tuple[int | None, DataReader]:
    """Feed ``data`` whole, or in pieces of ``split`` bytes; (end offset, reader)."""
    reader = DataReader(databytes)
    pieces = [data[i : i + split] for i in range(0, len(data), split)] if split else [data]
    offset = 0
    for piece in pieces:
        end = reader.feed(piece)
        if end is not None:
            return offset + end, reader
        if reader.bare:
            return None, reader
        offset += len(piece)
    return None, reader


@pytest.mark.parametrize("split", [0, 1, 2, 7])
def test_smtpd_51_stored_form_and_end(split: int) -> None:
    data = b"Subject: x\r\n\r\nhello\r\n..leading dot\r\n.x\r\n.\r\nQUIT\r\n"
    end, reader = run(data, split=split)
    assert end == data.index(b"QUIT")  # what follows is the next command
    assert bytes(reader.stored) == b"Subject: x\n\nhello\n.leading dot\nx\n"
    assert reader.verdict() is None


def test_smtpd_51_a_lone_dot_as_first_line_ends_an_empty_message() -> None:
    end, reader = run(b".\r\n")
    assert end == 3 and bytes(reader.stored) == b""


@pytest.mark.parametrize(
    "data",
    [
        b"a\r\n\n.\n",  # <LF>.<LF>
        b"a\r\n\n.\r\n",  # <LF>.<CR><LF>
        b"a\r\n\r.\r\n",  # <CR>.<CR><LF>
        b"a\r\n.\r\r\n",  # <CR><LF>.<CR>
        b"a\r\n.\n",  # <CR><LF>.<LF>
        b"a\rb\r\n.\r\n",  # bare CR inside a line
        b"a\nb\r\n.\r\n",  # bare LF inside a line
        b"a\r",  # CR then end of input ... then
    ],
)
def test_smtpd_51_bare_cr_or_lf_is_fatal(data: bytes) -> None:
    """Every smuggling variant: nothing is ever taken as the end, nothing is queued."""
    reader = DataReader(0)
    end = reader.feed(data)
    if data.endswith(b"\r"):
        assert end is None and not reader.bare  # the LF may still come ...
        reader.feed(b"x")  # ... but it did not
    assert reader.bare and end is None


def test_smtpd_52_any_byte_and_long_lines_are_stored() -> None:
    line = bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") * 40  # ~10 KB
    end, reader = run(b"X: y\r\n\r\n" + line + b"\r\n.\r\n", split=1000)
    assert end is not None and bytes(reader.stored) == b"X: y\n\n" + line + b"\n"
    assert reader.verdict() is None


@pytest.mark.parametrize(
    "data",
    [
        b"a\r\n\x00.\r\nMAIL FROM:<evil@x.test>\r\n.\r\n",  # NUL-dropping hop: data ends
        b"a\r\n.\x00\r\n.\r\n",
        b"\x00\r\n.\r\n",
        b"Subject: x\x00y\r\n\r\nbody\r\n.\r\n",
    ],
)
@pytest.mark.parametrize("split", [0, 1, 3])
def test_smtpd_51_nul_anywhere_refuses_the_message(data: bytes, split: int) -> None:
    """hardening #5: only CR LF "." CR LF ends the data here, but a NUL is refused whole."""
    end, reader = run(data, split=split)
    assert end == len(data) and reader.verdict() == NUL
    assert NUL.smtp().startswith("554 ") and NUL.smtp().endswith("(#5.6.0)")


def test_smtpd_60_size_takes_precedence_over_nul() -> None:
    _, reader = run(b"\x00" * 20 + b"\r\n.\r\n", databytes=10)
    assert reader.verdict() == TOO_BIG


def test_smtpd_53_hops_are_counted_in_the_header_only() -> None:
    header = b"Received: x\r\n" * 50 + b"delivered-to: y\r\n" * 49 + b" Received: cont\r\n"
    _, reader = run(header + b"\r\nReceived: body\r\n.\r\n")
    assert reader.hops == 99 and reader.verdict() is None
    _, reader = run(b"RECEIVED\r\n" + header + b"\r\n.\r\n")
    assert reader.hops == 100 and reader.verdict() == LOOPING


def test_smtpd_55_databytes_counts_the_stored_form() -> None:
    body = b"12345678\r\n"  # 9 bytes stored
    _, exact = run(body + b".\r\n", databytes=9)
    assert exact.verdict() is None and bytes(exact.stored) == b"12345678\n"
    _, over = run(body + b".\r\n", databytes=8)
    assert over.verdict() == TOO_BIG and bytes(over.stored) == b""  # storing stopped
    _, dots = run(b"..\r\n" + body + b".\r\n", databytes=11)  # removed dots do not count
    assert dots.verdict() is None


def test_smtpd_60_hops_take_precedence_over_size() -> None:
    _, reader = run(b"Received: x\r\n" * 100 + b"\r\n" + b"x" * 100 + b"\r\n.\r\n", databytes=10)
    assert reader.verdict() == LOOPING


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=17))
def test_smtpd_51_chunking_never_changes_the_outcome(data: bytes, split: int) -> None:
    whole_end, whole = run(data)
    split_end, pieces = run(data, split=split)
    assert (whole_end, whole.bare, bytes(whole.stored)) == (
        split_end,
        pieces.bare,
        bytes(pieces.stored),
    )
    if whole_end is not None:
        assert data[:whole_end].endswith(b"\r\n.\r\n") or data[:whole_end] == b".\r\n"
        assert b"\r" not in whole.stored


class LineByLine(DataReader):
    """The state machine alone, a byte class at a time: the reference for whole lines."""

    def _whole_lines(self, data: bytes, start: int) -> tuple[int, bool] | None:
        return None


MAIL_PIECES = st.sampled_from(
    [b"a", b"Subject: x", b"Received: y", b".", b"..", b"\r\n", b"\r\n", b"\r", b"\n", b"\0", b" "]
)


@given(
    st.lists(MAIL_PIECES, max_size=60).map(b"".join),
    st.integers(min_value=0, max_value=23),
    st.sampled_from([0, 5, 40]),
)
def test_smtpd_51_whole_lines_at_once_give_what_the_state_machine_gives(
    data: bytes, split: int, databytes: int
) -> None:
    """Throughput #10: the body's lines taken at once end the data at the same place, refuse
    the same bare CR or LF and NUL, and store the same bytes, whatever the chunks."""
    pieces = [data[i : i + split] for i in range(0, len(data), split)] if split else [data]
    outcomes = []
    for reader in (DataReader(databytes), LineByLine(databytes)):
        offset, end = 0, None
        for piece in pieces:
            end = reader.feed(piece)
            if end is not None or reader.bare:
                break
            offset += len(piece)
        outcomes.append(
            (
                None if end is None else offset + end,
                reader.bare,
                bytes(reader.stored),
                reader.size,
                reader.nul,
                reader.hops,
                reader.verdict(),
            )
        )
    assert outcomes[0] == outcomes[1]


def test_smtpd_51_a_body_of_whole_lines_is_stored_with_its_dots_removed() -> None:
    data = b"H: 1\r\n\r\n.first\r\nsecond\r\n..third\r\n\0\r\n.\r\nQUIT\r\n"
    end, reader = run(data)
    assert end == data.index(b"QUIT")
    assert bytes(reader.stored) == b"H: 1\n\nfirst\nsecond\n.third\n\0\n"
    assert reader.verdict() == NUL
