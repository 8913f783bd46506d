"""FETCH of a large message's whole text, or part of it, straight from the store (#13).

pymap loads a message before it writes a FETCH of its content and cuts a partial fetch
(RFC 3501 6.4.5, ``BODY[]<origin.octets>``) out of the whole. For a message of more than
:data:`STREAM_AT` octets, a FETCH whose content items are only ``RFC822.SIZE`` and the whole
message (``BODY[]``, ``BODY.PEEK[]``, ``RFC822``, ``BINARY[]`` of a message whose top level
needs no decoding), each with or without a partial, instead reads the header block (kept per
replica) and sends the octets asked for in chunks as the socket takes them: a partial reads
no further into the object than its end, and nothing is held whole. Anything else (numbered
sections, ``TEXT``, ``BODYSTRUCTURE``, a base64 top level under ``BINARY[]``) is pymap's
whole parse, as before.

The store keeps LF line ends and IMAP counts CRLF ones, so an octet of the message is found by
reading from the start of the object (each stored octet is at least one sent octet, so
``origin + octets`` stored octets are enough). Where the object needs no CR added (its size
in the store is the size IMAP counts), the range is read directly.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pymap.bytes import Writeable, WriteStream
from pymap.fetch import DynamicLoadedFetchValue, MessageAttributes
from pymap.parsing import Params
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.specials import FetchAttribute
from pymap.parsing.specials.fetchattr import FetchPartial

from qmesh.contract.errors import Temporary
from qmesh.store.base import BlobNotFound, StoreUnavailable

log = logging.getLogger(__name__)
STREAM_AT = 1 << 20  # messages at least this large are sent from the store in chunks
CHUNK = 65536
_BARE_LF = re.compile(rb"(?<!\r)\n")
_IDENTITY_CTE = re.compile(rb"\s*(7bit|8bit|binary)?\s*", re.I)
WHOLE = (b"BODY", b"BODY.PEEK", b"RFC822", b"BINARY", b"BINARY.PEEK")
NO_CONTENT = (b"UID", b"FLAGS", b"INTERNALDATE", b"MODSEQ", b"RFC822.SIZE", b"EMAILID")

Ranged = Callable[[int, int | None], AsyncIterator[bytes]]  # stored octets from, how many


def to_crlf(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Stored chunks with each bare LF made CRLF, as :func:`backend.with_crlf` does whole."""

    async def run() -> AsyncIterator[bytes]:
        after_cr = False
        async for chunk in chunks:
            if not chunk:
                continue
            out = _BARE_LF.sub(b"\r\n", chunk)
            if after_cr and chunk[:1] == b"\n":
                out = out[1:]  # the LF ends a CRLF split across two chunks
            after_cr = chunk[-1:] == b"\r"
            yield out

    return run()


async def crlf_size(read: Ranged) -> int:
    """Octets of the object with CRLF line ends, counted chunk by chunk."""
    return sum([len(c) async for c in to_crlf(read(0, None))])


class Sizes:
    """What IMAP counts of objects this replica has read whole once, by object key."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._sizes: OrderedDict[str, int] = OrderedDict()

    def get(self, key: str) -> int | None:
        return self._sizes.get(key)

    def put(self, key: str, size: int) -> None:
        self._sizes[key] = size
        if len(self._sizes) > self._max:
            self._sizes.popitem(last=False)


class StoredText(Writeable):
    """Octets ``start`` to ``start + length`` of a message in the store, in its CRLF form;
    ``length`` is exact (a literal's length is written before it). Written to a writer that
    can defer, it is read as the socket takes it; anything else cannot have it."""

    def __init__(self, read: Ranged, start: int, length: int, *, direct: bool) -> None:
        self._read = read
        self._start = start
        self._length = length
        self._direct = direct  # the stored octets are the sent ones

    def __len__(self) -> int:
        return self._length

    def __bytes__(self) -> bytes:
        raise TypeError("a message sent from the store is written, never made bytes")

    def write(self, writer: WriteStream) -> None:
        if not hasattr(writer, "defer"):
            raise TypeError("a message sent from the store needs a writer that can defer")
        writer.defer(self.chunks())

    async def chunks(self) -> AsyncIterator[bytes]:
        """Exactly ``length`` octets: a message expunged or unreadable meanwhile is padded
        with spaces, so the literal still ends where announced."""
        left = self._length
        if left <= 0:
            return  # nothing to send: nothing to read
        try:
            if self._direct:
                source: AsyncIterator[bytes] = self._read(self._start, left)
                skip = 0
            else:
                source = to_crlf(self._read(0, self._start + left))
                skip = self._start
            async for chunk in source:
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                at = 0
                while at < len(chunk) and left > 0:
                    piece = chunk[at : at + min(CHUNK, left)]
                    at += len(piece)
                    left -= len(piece)
                    yield piece
                if left <= 0:
                    return
        except (BlobNotFound, Temporary, StoreUnavailable) as err:
            log.warning("message text unreadable while sent, padded: %s", err)
        while left > 0:
            piece = b" " * min(left, CHUNK)
            left -= len(piece)
            yield piece


class Facts:
    """What a streamed FETCH knows of one message before it writes: the sizes in the store
    and in IMAP's count (the latter only where a literal's length depends on it)."""

    def __init__(self, read: Ranged, stored: int, total: int | None, listed: int) -> None:
        self.read = read
        self.stored = stored  # octets in the store: IMAP counts at least as many
        self.total = total  # octets IMAP counts, if known
        self.bound = listed  # the index's size (",W="): IMAP counts at most as many
        # RFC822.SIZE: the count if known, else the index's (what POP3 LIST says, the same
        # unless the stored text has CR LF of its own)
        self.listed = listed if total is None else total

    def text(self, partial: FetchPartial | None) -> StoredText:
        if partial is None:
            start, length = 0, self._total()
        else:
            start = partial.start
            want = partial.length if partial.length is not None else self._total()
            if start + want <= self.stored:
                length = want  # within what the store holds: no count needed
            elif self.total is None and start >= self.bound:
                length = 0  # past the end however it is counted (RFC 3501 6.4.5: "")
            else:
                length = max(0, min(want, self._total() - start))
        direct = self.total is not None and self.total == self.stored
        return StoredText(self.read, start, length, direct=direct)

    def _total(self) -> int:
        assert self.total is not None, "counted before writing"
        return self.total


def wants_total(facts_stored: int, listed: int, attrs: Sequence[FetchAttribute]) -> bool:
    """Whether a literal's length needs IMAP's exact count of the message."""
    for attr in attrs:
        if attr.value not in WHOLE:
            continue
        partial = attr.partial
        if partial is None or partial.length is None:
            return True
        if partial.start + partial.length > facts_stored and partial.start < listed:
            return True
    return False


def streamable(attrs: Sequence[FetchAttribute]) -> bool:
    """Whether every content item of a FETCH is the whole message or RFC822.SIZE."""
    found = False
    for attr in attrs:
        if attr.value in WHOLE:
            if attr.value.startswith(b"BODY") and attr.section is None:
                return False  # BODY alone is BODYSTRUCTURE's short form
            section = attr.section
            if section is not None and (section.parts or section.specifier is not None):
                return False
            found = True
        elif attr.value == b"RFC822.SIZE":
            found = True
        elif attr.value not in NO_CONTENT and attr.value not in (b"ENVELOPE",):
            return False
    return found


def whole(attrs: Sequence[FetchAttribute]) -> bool:
    """Whether a FETCH asks for a message's text (not only its size)."""
    return any(attr.value in WHOLE for attr in attrs)


def identity_encoding(values: Sequence[str]) -> bool:
    """Whether a top-level Content-Transfer-Encoding leaves BINARY[] as the message."""
    return all(_IDENTITY_CTE.fullmatch(str(v).encode("ascii", "replace")) for v in values)


_original_load_hook = MessageAttributes.load_hook
_original_partial = DynamicLoadedFetchValue._get_partial.__func__  # type: ignore[attr-defined]


@asynccontextmanager
async def _load_hook(self: MessageAttributes) -> AsyncIterator[None]:
    streamed = getattr(self.message, "streamed", None)
    loaded = None
    attrs = self.attributes
    # RFC822.SIZE alone is the index's, whatever the size; a text is streamed only when large
    large = not whole(attrs) or getattr(self.message, "size", 0) >= STREAM_AT
    if streamed is not None and large and streamable(attrs):
        loaded = await streamed(attrs)
    if loaded is None:
        async with _original_load_hook(self):
            yield
        return
    with self._get_loaded.apply(loaded):
        yield


def _get_partial(cls: type, data: Writeable, partial: FetchPartial | None) -> Writeable:
    if isinstance(data, Whole):
        return data.facts.text(partial)
    return _original_partial(cls, data, partial)  # type: ignore[no-any-return]


class Whole(Writeable):
    """What a streamed message's ``get_body()`` gives: the whole message, cut by
    :func:`_get_partial` (every FETCH item goes through it, with or without a partial)."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts

    def __len__(self) -> int:
        return len(self.facts.text(None))

    def __bytes__(self) -> bytes:
        raise TypeError("a message sent from the store is written, never made bytes")

    def write(self, writer: WriteStream) -> None:
        self.facts.text(None).write(writer)


def _write(self: DynamicLoadedFetchValue, writer: WriteStream) -> None:
    """pymap writes a FETCH item as ``bytes(item)``; an item of a streamed message is written
    in pieces, so its text reaches the writer as a :class:`StoredText`."""
    loaded = self._get_loaded.loaded_msg
    if not getattr(loaded, "streams", False) or loaded is None:
        writer.write(bytes(self))
        return
    value = self.get_value(loaded)
    writer.write(bytes(self.attribute.for_response) + b" ")
    if isinstance(value, Writeable):
        value.write(writer)
    else:
        writer.write(bytes(value))


_original_for_response = FetchAttribute.for_response


def _for_response(self: FetchAttribute) -> FetchAttribute:
    """pymap names ``BINARY.PEEK[]`` so in its answer; RFC 3516 4.2 and Dovecot say
    ``BINARY[]``, as ``BODY.PEEK[]`` is answered ``BODY[]``."""
    found: FetchAttribute = _original_for_response.fget(self)  # type: ignore[attr-defined]
    if found.value == b"BINARY.PEEK":
        found = FetchAttribute(b"BINARY", found.section, found.partial)
        self._for_response = found
    return found


MAX_NUMBER64 = 2**63 - 1  # RFC 9051 9: a partial's origin and count are number64
_parse_before: Callable[..., tuple[Any, memoryview]]


def _parse(cls: type[FetchAttribute], buf: memoryview, params: Params) -> tuple[Any, memoryview]:
    """pymap's parse of a FETCH item, with a partial beyond number64 a BAD (as Dovecot)."""
    attr, rest = _parse_before(cls, buf, params)
    partial = attr.partial
    if partial is not None and max(partial.start, partial.length or 0) > MAX_NUMBER64:
        raise NotParseable(buf)
    return attr, rest


def install() -> None:
    global _parse_before
    if MessageAttributes.load_hook is _load_hook:
        return  # once
    _parse_before = FetchAttribute.parse.__func__  # type: ignore[attr-defined]  # with MODSEQ
    FetchAttribute.parse = classmethod(_parse)  # type: ignore[method-assign, assignment]
    FetchAttribute.for_response = property(_for_response)  # type: ignore[method-assign, assignment]
    DynamicLoadedFetchValue.write = _write  # type: ignore[method-assign, assignment]
    MessageAttributes.load_hook = _load_hook  # type: ignore[method-assign]
    DynamicLoadedFetchValue._get_partial = classmethod(_get_partial)  # type: ignore[method-assign, assignment]
