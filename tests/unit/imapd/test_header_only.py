"""Header-only loads answer exactly as a load of the whole message (#13 performance).

SEARCH HEADER/FROM/SUBJECT and FETCH ENVELOPE read only a message's header block
(services/imapd/backend.py); what a client sees must not change. Each case, hostile ones
included, is compared with pymap's own parse of the whole message.
"""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime

import pytest
from pymap.message import BaseLoadedMessage
from pymap.mime import MessageContent
from pymap.parsing.specials import FetchRequirement

from qmesh.mailbox.index import Entry
from services.imapd.backend import (
    HeaderCache,
    HeaderOnly,
    HeaderSource,
    Message,
    header_block,
    with_crlf,
)

CASES = [
    b"",
    b"Subject: no line end",
    b"Subject: only a header\r\n",
    b"Subject: hi\r\n\r\nbody\r\n",
    b"Subject: hi\r\n \r\nthe blank line is only white space\r\n",
    b"Subject: folded\r\n  over\r\n\tthree lines\r\n\r\nbody\r\n",
    b"\r\nbody without a header\r\n",
    b'Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: "J\\"o" <a@b.test>\r\n\r\nx',
    b"From: a @ b.test (comment)\r\nTo: x@y.test, z@w.test\r\nSubject: a\r\nSubject: b\r\n\r\n",
    b"Subject: \xff\xfe latin\r\nX-Empty:\r\nno colon here\r\n\r\n",
    b"Subject: bare\nFrom: lf@only.test\n\nbody\n",
    b"Date: Mon, 1 Dec 2025 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\n",
    b": no name\r\nSubject:   spaces  inside   \r\n\r\n",
]
NAMES = [b"subject", b"from", b"to", b"date", b"message-id", b"x-empty", b"", b"missing"]


def message() -> Message:
    entry = Entry(1, 1, frozenset(), 0, 0, "new/x")
    return Message(entry, None)


def values(loaded: BaseLoadedMessage, name: bytes) -> list[str] | str:
    """The header's values as a client sees them, or the error pymap would meet."""
    try:
        return [str(v) for v in loaded.get_header(name)]
    except Exception as err:  # pymap fails on some hostile headers: it must fail alike
        return type(err).__name__


def envelope(loaded: BaseLoadedMessage) -> bytes | str:
    try:
        return bytes(loaded.get_envelope_structure())
    except Exception as err:  # pymap fails on some hostile headers: it must fail alike
        return type(err).__name__


def compare(raw: bytes) -> None:
    msg = message()
    full = BaseLoadedMessage(msg, FetchRequirement.CONTENT, MessageContent.parse(raw))
    part = HeaderOnly(msg, FetchRequirement.HEADER, header_block(raw))
    for name in NAMES:
        assert values(part, name) == values(full, name), (raw, name)
    assert envelope(part) == envelope(full), raw
    assert bytes(part.get_headers([])) == bytes(full.get_headers([]))


@pytest.mark.parametrize("raw", CASES)
def test_header_only_answers_as_the_whole_message(raw: bytes) -> None:
    compare(raw)


def test_random_headers_answer_as_the_whole_message() -> None:
    rng = random.Random(13)
    alphabet = string.printable + '\x00\x7f\xe9=?:;"()\\<>@, \t'
    for _ in range(300):
        fields = []
        for _ in range(rng.randint(0, 5)):
            name = rng.choice(["Subject", "From", "To", "X-Thing", "date", "SUBJECT"])
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
            fold = rng.choice(["", "\r\n ", "\r\n\t"])
            fields.append(f"{name}: {value}{fold}more")
        raw = ("\r\n".join(fields) + rng.choice(["\r\n\r\nbody", "\r\n", ""])).encode(
            "utf-8", "surrogateescape"
        )
        compare(with_crlf(raw))


def test_the_header_cache_is_bounded_by_octets() -> None:
    cache = HeaderCache(max_octets=100)
    for i in range(10):
        cache.put(f"k{i}", b"x" * 30)
    held = [k for k in (f"k{i}" for i in range(10)) if cache.get(k) is not None]
    assert held == ["k7", "k8", "k9"]
    cache.put("huge", b"x" * 101)
    assert cache.get("huge") is None
    roomy = HeaderCache()
    roomy.put("no-header", b"x" * (256 * 1024 + 1))  # a message with no blank line
    assert roomy.get("no-header") is None


async def test_a_header_only_load_reads_the_object_once() -> None:
    reads = 0

    async def load() -> bytes:
        nonlocal reads
        reads += 1
        return b"Subject: once\nFrom: a@b.test\n\nbody\n"

    cache = HeaderCache()
    head = HeaderSource(load, cache, "d/a/INBOX/new/x")
    entry = Entry(1, 1, frozenset(), 0, int(datetime(2025, 1, 1, tzinfo=UTC).timestamp()), "new/x")
    msg = Message(entry, load, head=head)
    for _ in range(3):
        loaded = await msg.load_content(FetchRequirement.HEADER)
        assert [str(v) for v in loaded.get_header(b"subject")] == ["once"]
    assert reads == 1
    whole = await msg.load_content(FetchRequirement.CONTENT)
    assert b"body" in bytes(whole)
