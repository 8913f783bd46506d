"""The pieces of a FETCH sent from the store (services/imapd/streaming.py, #13): CRLF made
chunk by chunk as it is made whole, windows cut exactly, header blocks found by ranged reads
as by a whole read, and hostile partial specifications."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from pymap.parsing import Params
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.specials import FetchAttribute

from qmesh.store.base import BlobNotFound
from services.imapd import server  # noqa: F401 - installs the FETCH changes
from services.imapd.backend import HeaderCache, HeaderSource, header_block, with_crlf
from services.imapd.streaming import Ranged, StoredText, crlf_size, to_crlf


def ranged_over(stored: bytes, chunk: int) -> tuple[list[tuple[int, int | None]], Ranged]:
    asked: list[tuple[int, int | None]] = []

    async def read(offset: int, length: int | None) -> AsyncIterator[bytes]:
        asked.append((offset, length))
        end = len(stored) if length is None else min(len(stored), offset + length)
        for at in range(offset, end, chunk):
            yield stored[at : min(at + chunk, end)]

    return asked, read


async def collect(source: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in source])


HOSTILE = [
    b"a\nb\r\nc\r\r\n\n\r" + b"\n" * 5 + b"\r",
    b"\r\n" * 7,
    b"\n" * 9,
    bytes(random.Random(13).choice(b"ab\r\n") for _ in range(5000)),
]


@pytest.mark.parametrize("stored", HOSTILE)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
async def test_crlf_by_chunks_is_crlf_of_the_whole(stored: bytes, chunk: int) -> None:
    _, read = ranged_over(stored, chunk)
    assert await collect(to_crlf(read(0, None))) == with_crlf(stored)
    assert await crlf_size(read) == len(with_crlf(stored))


@pytest.mark.parametrize("stored", HOSTILE)
async def test_every_window_is_the_slice_of_the_crlf_text(stored: bytes) -> None:
    sent = with_crlf(stored)
    for start in (0, 1, 2, 5, len(sent) // 2, len(sent) - 1):
        for length in (1, 2, 3, 100, len(sent)):
            asked, read = ranged_over(stored, 3)
            want = sent[start : start + length]
            text = StoredText(read, start, len(want), direct=False)
            assert await collect(text.chunks()) == want
            assert all(n is not None and n <= start + length for _, n in asked)  # no further


async def test_a_message_gone_while_sent_is_padded_to_its_announced_length() -> None:
    async def gone(offset: int, length: int | None) -> AsyncIterator[bytes]:
        yield b"abc\n"
        raise BlobNotFound("expunged meanwhile")

    text = StoredText(gone, 0, 100, direct=False)
    got = await collect(text.chunks())
    assert got == b"abc\r\n" + b" " * 95


def fetch_attr(text: bytes) -> FetchAttribute:
    attr, _ = FetchAttribute.parse(memoryview(text), Params())
    return attr


@pytest.mark.parametrize(
    "spec", [b"BODY[]<0.0>", b"BODY[]<0.99999999999999999999>", b"BODY[]<9223372036854775808.1>"]
)
def test_a_partial_beyond_number64_or_of_no_octets_is_bad(spec: bytes) -> None:
    with pytest.raises(NotParseable):
        fetch_attr(spec)


def test_the_largest_partials_parse_and_binary_peek_is_answered_as_binary() -> None:
    attr = fetch_attr(b"BODY.PEEK[]<9223372036854775807.4294967295>")
    assert attr.partial is not None and attr.partial.start == 2**63 - 1
    assert bytes(fetch_attr(b"BINARY.PEEK[]<1.2>").for_response) == b"BINARY[]<1>"
    assert bytes(fetch_attr(b"BODY.PEEK[]<1.2>").for_response) == b"BODY[]<1>"


HEADERS = [
    b"Subject: s\n\nbody\n",
    b"Subject: s\n" + b"X-Long: " + b"x" * 20_000 + b"\n\nbody\n",  # past the first read
    b"Subject: s\n" + b" folded\n" * 3000 + b"\nbody\n",  # a cut inside a folded field
    b"no header end at all\n" * 20_000,  # beyond what is kept: the whole is the header
    b"\nbody first\n",
    b"",
    b"Subject: no newline at the end",
]


@pytest.mark.parametrize("message", HEADERS)
async def test_ranged_header_reads_find_what_a_whole_read_finds(message: bytes) -> None:
    async def load() -> bytes:
        return message

    head = HeaderSource(load, HeaderCache(), "k")
    assert await head() == header_block(with_crlf(message))


async def test_an_origin_past_the_end_is_empty_without_counting_the_message() -> None:
    from pymap.parsing.specials.fetchattr import FetchPartial

    from services.imapd.streaming import Facts, wants_total

    asked, read = ranged_over(b"line\n" * 1000, 64)
    attrs = [fetch_attr(b"BODY.PEEK[]<4294967295.1>")]
    assert not wants_total(5000, 6000, attrs)  # stored 5000 octets, 6000 by the index
    facts = Facts(read, 5000, None, 6000)
    text = facts.text(FetchPartial(4294967295, 1))
    assert len(text) == 0 and await collect(text.chunks()) == b""
    within = facts.text(FetchPartial(10, 20))  # inside the stored size: no count either
    assert await collect(within.chunks()) == (b"line\r\n" * 1000)[10:30]
    assert asked == [(0, 30)]
