"""One header field found without splitting the whole header (#13 performance): for every
message, hostile ones first, the values a SEARCH HEADER looks at and the header block read in
pieces are what pymap's parse of the whole message gives."""

from __future__ import annotations

import random

import pytest
from pymap.message import BaseLoadedMessage
from pymap.mime import MessageContent
from pymap.parsing.specials import FetchRequirement

from qmesh.mailbox.index import Entry
from services.imapd.backend import (
    HeaderCache,
    HeaderOnly,
    Message,
    _named,
    folds_of,
    head_of,
    with_crlf,
)
from services.imapd.headerfields import field_lines, header_block

LONG = b"x" * 5000
HOSTILE = [
    b"",
    b"\n",
    b"\r\n\r\n",
    b"Subject",
    b"Subject: no line end",
    b"Subject: ends in blanks\r\n   ",
    b"Subject: ends in a tab line\r\n\t\r\n",
    b"Subject: x\r\n \r\nblank line of a space\r\n",
    b"Subject: x\r\nSubject : spaced name\r\nsubject\t:tab\r\nSUBJECT:\r\n\r\n",
    b"Subject: missing separator\r\nFrom: a@b.test\r\nbody without a blank line",
    b"Subject: missing separator, ends in LF\r\nbody line\r\n",
    b"Subject: bare lf\nFrom: a@b.test\n\nbody\n",
    b"Subject: cr\rinside\r\n\r\n",
    b"Subject\r: cr before the colon\r\n\r\n",
    b"Subject: " + b" ".join([LONG] * 4) + b"\r\n\r\n",
    b"Subject: folded" + b"".join(b"\r\n " + LONG for _ in range(40)) + b"\r\n\r\n",
    b"Subject: \x00nul\x00\r\nFrom: \x00@\x00\r\n\r\n",
    b"Subject: \xff\xfe\xe9 8-bit\r\nTo: \xc3\xa9@b.test\r\n\r\n",
    b"Subject: =?utf-8?q?caf=C3=A9?= and =?bogus?x?zz?= =?utf-8?b?!!!?=\r\n\r\n",
    b"Subject: =?utf-8?q?unterminated\r\nSubject: =?iso-8859-1?q?=E9t=E9?=\r\n\r\n",
    b"Subject: =?utf-8?b?" + b"QUJD" * 2000 + b"?=\r\n\r\n",
    b" continuation before any field\r\nSubject: after\r\n\r\n",
    b"X-Subject: not it\r\nSubject-X: nor this\r\nSubject: this\r\n\r\n",
    b"From: a @ b.test (comment)\r\nTo: x@y.test,\r\n  z@w.test\r\nDate: garbage\r\n\r\n",
    b"Date: Mon, 1 Dec 2025 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\n",
    b"no colon here\r\nSubject: after a line without one\r\n\r\n",
    b": no name\r\n:\r\nSubject:   spaces  inside   \r\n\r\n",
    b"Subject: " + b"y" * 300_000 + b"\r\n\r\nbody",
    b"".join(b"X-%d: %s\r\n" % (i, LONG[:200]) for i in range(2000)) + b"Subject: last\r\n\r\n",
]
NAMES = [
    b"subject",
    b"SUBJECT",
    b"from",
    b"to",
    b"date",
    b"message-id",
    b"x-subject",
    b"x-1999",
    b"missing",
    b"",
    b"sub ject",
    b"subject:",
    b":",
    b"\xe9",
]


def loaded(raw: bytes, block: bytes | None = None) -> BaseLoadedMessage:
    msg = Message(Entry(1, 1, frozenset(), 0, 0, "new/x"), None)
    if block is None:
        return BaseLoadedMessage(msg, FetchRequirement.CONTENT, MessageContent.parse(raw))
    return HeaderOnly(msg, FetchRequirement.HEADER, block)


def values(message: BaseLoadedMessage, name: bytes) -> list[str] | str:
    """Each value as a client's SEARCH sees it, or the error pymap meets."""
    try:
        return [str(v) for v in message.get_header(name)]
    except Exception as err:  # pymap fails on some hostile headers: it must fail alike
        return type(err).__name__


def random_messages() -> list[bytes]:
    rng = random.Random(1313)
    pieces = [b"Subject", b"subject", b"From", b"X", b":", b" ", b"\t", b"\r", b"\n", b"\r\n"]
    pieces += [b"=?utf-8?q?a=C3?=", b"\x00", b"\xe9", b"a@b", b"<x>", b"(c)", b'"q"', b","]
    return [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))) for _ in range(1500)]


@pytest.mark.parametrize("raw", HOSTILE + random_messages())
def test_one_field_gives_what_the_whole_parse_gives(raw: bytes) -> None:
    whole = loaded(raw)
    part = loaded(raw, header_block(raw))
    for name in NAMES:
        assert values(part, name) == values(whole, name), name


@pytest.mark.parametrize("raw", HOSTILE + random_messages()[:300])
def test_fields_found_directly_are_the_folds_pymap_finds(raw: bytes) -> None:
    block = header_block(raw)
    for name in NAMES:
        found = field_lines(block, name)
        if found is not None:
            assert found == _named(block, folds_of(block), name), name


@pytest.mark.parametrize("raw", HOSTILE)
def test_a_header_read_in_pieces_is_the_header_of_the_whole(raw: bytes) -> None:
    """What a first SEARCH keeps of an object read ``size`` octets at a time (LF as the
    store keeps it) is pymap's header block of the message with CRLF."""
    stored = raw.replace(b"\r\n", b"\n")
    expected = header_block(with_crlf(stored))
    for size in (1, 7, 64, 16384, len(stored), len(stored) + 1):
        block = head_of(stored[:size], size)
        if block is not None:
            assert block == expected, size
        else:
            assert len(stored) >= size  # only a full read can end before the header does
    assert head_of(stored, len(stored) + 1) == expected


def test_the_cache_counts_the_blocks_it_lets_go() -> None:
    """A SEARCH skips looking for missing headers only while nothing was let go since every
    header of the folder was found kept: each block let go must count."""
    cache = HeaderCache(max_octets=100)
    for i in range(3):
        cache.put(f"k{i}", b"x" * 30)
    assert cache.dropped == 0 and cache.holds("k0")
    cache.put("k3", b"x" * 30)
    assert cache.dropped == 1 and not cache.holds("k0")
    cache.put("k4", b"x" * 70)
    assert cache.dropped == 3 and [k for k in ("k3", "k4") if cache.holds(k)] == ["k3", "k4"]
