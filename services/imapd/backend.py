"""pymap's backend interfaces over :mod:`qmesh.mailbox` (#13).

pymap parses commands, keeps the selected-mailbox view of a session (sequence numbers,
untagged EXISTS/EXPUNGE/FETCH) and evaluates FETCH and SEARCH; this module answers its
questions from the folder index in KV and the message objects in the mail bucket. What is
derived from one revision of an index (the message objects pymap keeps, UID lookups) is built
once per replica and shared by every session that looks at that revision (:class:`Views`), so
a session holds only pymap's own per-message view (UID, sequence number, flags).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from email.headerregistry import UnstructuredHeader
from email.policy import SMTP

from pymap.bytes import Writeable
from pymap.concurrent import Event
from pymap.context import subsystem
from pymap.exceptions import MailboxNotFound, NotAllowedError, ResponseError, TemporaryFailure
from pymap.flags import FlagOp
from pymap.interfaces.message import CachedMessage
from pymap.listtree import ListTree
from pymap.mailbox import MailboxSnapshot
from pymap.message import BaseLoadedMessage, BaseMessage
from pymap.mime import MessageContent, MessageHeader
from pymap.mime.parsed import ParsedHeaders
from pymap.parsing.message import AppendMessage
from pymap.parsing.response import ResponseCode, ResponseNo
from pymap.parsing.response.fetch import (
    BodyStructure,
    ContentBodyStructure,
    MessageBodyStructure,
    TextBodyStructure,
)
from pymap.parsing.specials import FetchAttribute, FetchRequirement, ObjectId, SequenceSet
from pymap.parsing.specials.flag import Deleted, Flag, Recent
from pymap.selected import SelectedMailbox, SelectedSet

from qmesh.contract.errors import Temporary
from qmesh.mailbox.flags import normalise
from qmesh.mailbox.folders import DELIMITER, INBOX, BadFolderName, check_name, key_segment
from qmesh.mailbox.index import Entry, FlagMode, FolderIndex
from qmesh.mailbox.names import account_key
from qmesh.mailbox.quota import Quota, exceeds
from qmesh.mailbox.sync import AccountMailbox, FolderExists, FolderMissing
from qmesh.store.base import BlobNotFound, StoreUnavailable
from services.imapd import keywords, streaming
from services.imapd.headerfields import Lines, field_lines, header_end
from services.imapd.headerfields import header_block as header_block  # for its tests

RESYNC_SECONDS = 30.0  # a selected folder is listed again at least this often (pop3d's DELE)
IDLE_RESYNC = 60.0  # and while IDLE, even if no announcement came
WARM_AT_ONCE = 32  # header reads a SEARCH keeps in flight, one object each
READ_AT_ONCE = 256  # header blocks a SEARCH reads as one batch (services/imapd/backend.py)
MAX_HEADER_KEPT = 256 * 1024  # octets of one header block the replica keeps
HEAD_READS = (16 * 1024, MAX_HEADER_KEPT)  # ranged reads that look for the end of a header
_BARE_LF = re.compile(rb"(?<!\r)\n")
MODES: dict[FlagOp, FlagMode] = {
    FlagOp.ADD: "add",
    FlagOp.DELETE: "remove",
    FlagOp.REPLACE: "replace",
}

Register = Callable[[Event], None]
Limit = Callable[[], Awaitable[int | None]]


async def no_limit() -> int | None:
    return None


class OverQuota(ResponseError):
    """APPEND or COPY that would take the account over its quota (RFC 9208 4.2)."""

    def get_response(self, tag: bytes) -> ResponseNo:
        return ResponseNo(tag, b"Quota exceeded.", ResponseCode.of(b"OVERQUOTA"))


def temporary(err: Exception) -> TemporaryFailure:
    text = err.text if isinstance(err, Temporary) else "The mail store is unavailable."
    return TemporaryFailure(text)


_FLAG_SETS: dict[frozenset[str], frozenset[Flag]] = {}


def to_flags(flags: Iterable[str]) -> frozenset[Flag]:
    """pymap's flags of ``flags``; the few distinct sets a folder has are made once."""
    key = frozenset(flags)
    found = _FLAG_SETS.get(key)
    if found is None:
        found = frozenset(Flag(f) for f in key)
        if len(_FLAG_SETS) < 4096:
            _FLAG_SETS[key] = found
    return found


def from_flags(flags: Iterable[Flag]) -> frozenset[str]:
    out = (normalise(f.value.decode("ascii", "replace")) for f in flags if f != Recent)
    return frozenset(f for f in out if f is not None)


def with_crlf(stored: bytes) -> bytes:
    """Maildir keeps LF line ends; IMAP speaks CRLF (RFC 3501 2.1)."""
    return _BARE_LF.sub(b"\r\n", stored)


class LoadedMessage(BaseLoadedMessage):
    """pymap's loaded message with RFC 3501's body sizes in BODYSTRUCTURE: the octets and
    lines of a part's body, not of the part with its header (what Dovecot reports)."""

    @classmethod
    def _get_size_with_lines(cls, msg: MessageContent) -> tuple[int, int]:
        body = bytes(msg.body)
        return len(body), body.count(b"\n")

    @classmethod
    def _get_body_structure(cls, msg: MessageContent) -> BodyStructure:
        structure = super()._get_body_structure(msg)
        if isinstance(structure, ContentBodyStructure) and not isinstance(
            structure, (TextBodyStructure, MessageBodyStructure)
        ):
            structure.size = len(bytes(msg.body))
        return structure


_PLAIN = re.compile(r"(?!.*=\?)[\t\x20-\x7e]*")  # printable ASCII without encoded words


def head_of(part: bytes, asked: int) -> bytes | None:
    """The header block, with CRLF line ends, of an object whose first ``asked`` octets (or
    all, if fewer) are ``part``; ``None`` when they end before the header does."""
    end = header_end(part)
    if end is not None:
        return with_crlf(part[:end])
    if len(part) < asked:
        return with_crlf(part)  # the whole object, and no line ends its header
    return None


class HeaderOnly(LoadedMessage):
    """A message loaded for what needs only its header (SEARCH HEADER/FROM/SUBJECT/SENT*,
    FETCH ENVELOPE and BODY[HEADER...]): the header block alone, parsed only as far as asked."""

    def __init__(self, message: BaseMessage, requirement: FetchRequirement, block: bytes) -> None:
        super().__init__(message, requirement, None)
        self._block = block
        self._folds: Folds | None = None

    @property
    def content(self) -> MessageContent:
        if self._content is None:
            self._content = MessageContent.parse(self._block)
        return self._content

    def get_header(self, name: bytes) -> Sequence[str]:
        return header_values(self._block, name, self._all_folds)

    def _all_folds(self) -> Folds:
        if self._folds is None:
            self._folds = folds_of(self._block)
        return self._folds


class Streamed(HeaderOnly):
    """A large message loaded for a FETCH of only its whole text (or part of it) and
    RFC822.SIZE: its header block, and the text read from the store as it is written
    (services/imapd/streaming.py)."""

    streams = True

    def __init__(self, message: Message, block: bytes, facts: streaming.Facts) -> None:
        super().__init__(message, FetchRequirement.HEADER, block)
        self._facts = facts

    def get_size(self, section: Sequence[int] | None = None) -> int:
        return self._facts.listed if not section else super().get_size(section)

    def get_body(self, section: Sequence[int] | None = None, binary: bool = False) -> Writeable:
        if section:
            return super().get_body(section, binary)
        return streaming.Whole(self._facts)


Folds = Sequence[Sequence[tuple[int, int, int]]]


def folds_of(block: bytes) -> Folds:
    """The header fields of ``block``, each its lines, as pymap finds them."""
    head, _ = MessageContent._split_lines(block, MessageContent._find_lines(block))
    return MessageHeader._find_folds(block, head)


def header_values(block: bytes, name: bytes, folds: Callable[[], Folds]) -> list[str]:
    """pymap's values of header ``name``, parsing only that header's fields (found directly,
    :func:`~services.imapd.headerfields.field_lines`, or among all of ``folds()``)."""
    found = field_lines(block, name)
    if found is None:
        found = _named(block, folds(), name)
    return [_value(lines) for lines in found]


def _named(block: bytes, folds: Folds, name: bytes) -> list[Lines]:
    wanted = name.lower()
    out: list[Lines] = []
    for group in folds:
        start, end, _ = group[0]
        colon = block.find(b":", start, end)
        if colon >= 0 and block[start:colon].strip().lower() == wanted:
            out.append([block[a:b].decode("ascii", "surrogateescape") for a, b, _ in group])
    return out


def _value(lines: Lines) -> str:
    """A value of an unstructured header in plain printable ASCII is itself (what the
    registry would give back); anything else goes through pymap's header registry."""
    field, value = SMTP.header_source_parse(lines)
    if _unstructured(field) and _PLAIN.fullmatch(value):
        return value
    return ParsedHeaders._registry(field, value)


_UNSTRUCTURED: dict[str, bool] = {}


def _unstructured(field: str) -> bool:
    """Whether pymap's header registry parses ``field`` as unstructured (asked once per name:
    the registry makes a new class each time it is asked)."""
    name = field.lower()
    found = _UNSTRUCTURED.get(name)
    if found is None:
        found = issubclass(ParsedHeaders._registry[name], UnstructuredHeader)
        if len(_UNSTRUCTURED) < 1024:
            _UNSTRUCTURED[name] = found
    return found


class HeaderCache:
    """Header blocks of messages this replica has read, by object key (an object's content
    never changes under its key), bounded by octets: a second SEARCH on a header reads
    nothing from the store, as Dovecot's ``dovecot.index.cache`` saves it re-reading files."""

    def __init__(self, max_octets: int = 64 * 1024 * 1024, max_values: int = 200_000) -> None:
        self._max = max_octets
        self._held = 0
        self._blocks: OrderedDict[str, bytes] = OrderedDict()
        # and the values of the header names searched for: (key, name) -> values
        self._max_values = max_values
        self._values: OrderedDict[tuple[str, bytes], tuple[str, ...]] = OrderedDict()
        self.sizes = streaming.Sizes()  # and what IMAP counts of large objects read whole
        self.dropped = 0  # header blocks let go so far (to make room)

    def values(self, key: str, name: bytes) -> tuple[str, ...] | None:
        return self._values.get((key, name))

    def put_values(self, key: str, name: bytes, values: Sequence[str]) -> None:
        self._values[(key, name)] = tuple(values)
        if len(self._values) > self._max_values:
            self._values.popitem(last=False)

    def holds(self, key: str) -> bool:
        """Whether the block of ``key`` is kept (without counting as a use of it)."""
        return key in self._blocks

    def get(self, key: str) -> bytes | None:
        block = self._blocks.get(key)
        if block is not None:
            self._blocks.move_to_end(key)
        return block

    def put(self, key: str, block: bytes) -> None:
        if key in self._blocks or len(block) > min(self._max, MAX_HEADER_KEPT):
            return  # a "header" that large is a message without one: read it again if asked
        self._blocks[key] = block
        self._held += len(block)
        while self._held > self._max:
            _, old = self._blocks.popitem(last=False)
            self._held -= len(old)
            self.dropped += 1


class Message(BaseMessage):
    """One message of a folder: metadata from the index, content read only when asked for."""

    __slots__ = ["_head", "_load", "modseq", "size"]

    def __init__(
        self,
        entry: Entry,
        load: Callable[[], Awaitable[bytes]] | None,
        *,
        expunged: bool = False,
        head: HeaderSource | None = None,
    ) -> None:
        self.modseq = entry.modseq  # CONDSTORE (services/imapd/condstore.py)
        self.size = entry.size
        super().__init__(
            entry.uid,
            datetime.fromtimestamp(entry.when, UTC),
            to_flags(entry.flags),
            email_id=None,
            expunged=expunged,
        )
        self._load = load
        self._head = head

    async def load_content(self, requirement: FetchRequirement) -> LoadedMessage:
        content = None
        if (
            self._head is not None
            and requirement.has_none(FetchRequirement.BODY)
            and requirement.has_all(FetchRequirement.HEADER)
        ):
            try:
                return HeaderOnly(self, requirement, await self._head())
            except (Temporary, StoreUnavailable) as err:
                raise temporary(err) from err
        if self._load is not None and not requirement.has_none(FetchRequirement.CONTENT):
            try:
                content = MessageContent.parse(with_crlf(await self._load()))
            except BlobNotFound:
                content = MessageContent.parse(b"")  # expunged meanwhile: an empty message
            except (Temporary, StoreUnavailable) as err:
                raise temporary(err) from err
        return LoadedMessage(self, requirement, content)

    async def streamed(self, attrs: Sequence[FetchAttribute]) -> Streamed | None:
        """The message loaded for a FETCH that :func:`streaming.streamable` allows, its text
        left in the store; ``None`` where pymap's whole parse is needed after all."""
        head = self._head
        if head is None:
            return None
        text = streaming.whole(attrs)
        total = head.cache.sizes.get(head.key)
        try:
            block = b""  # RFC822.SIZE alone needs neither header nor text
            if text or any(a.value == b"ENVELOPE" for a in attrs):
                block = await head()
            if any(a.value.startswith(b"BINARY") for a in attrs):
                cte = HeaderOnly(self, FetchRequirement.HEADER, block)
                if not streaming.identity_encoding(cte.get_header(b"content-transfer-encoding")):
                    return None  # BINARY[] decodes the top level: pymap's parse
            stored = await head.stored_size() if text else 0
            if text and total is None and streaming.wants_total(stored, self.size, attrs):
                total = await streaming.crlf_size(head.ranged)
                head.cache.sizes.put(head.key, total)
        except BlobNotFound:
            return None  # expunged meanwhile: pymap's empty message
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        return Streamed(self, block, streaming.Facts(head.ranged, stored, total, self.size))


class View:
    """One index revision as pymap needs it: message objects and lookups, built once."""

    __slots__ = ("by_uid", "headers_read", "index", "messages", "modseqs", "recent", "unseen")

    def __init__(
        self,
        box: AccountMailbox,
        name: str,
        index: FolderIndex,
        headers: HeaderCache,
        previous: View | None = None,
    ) -> None:
        self.index = index
        # HeaderCache.dropped when every message's header block was last found kept
        self.headers_read: int | None = None
        self.messages: list[Message]
        self.by_uid: dict[int, Message]
        self.modseqs: dict[int, int]
        self.unseen: list[int]  # sequence numbers
        if previous is not None and previous.index.entries is index.entries:
            # the same entries (a claim of \Recent changes only where they start): shared
            self.messages = previous.messages
            self.by_uid = previous.by_uid
            self.modseqs = previous.modseqs
            self.unseen = previous.unseen
            self.recent = sum(1 for e in index.entries.values() if e.uid >= index.first_recent)
            return
        self.messages = []
        self.by_uid = {}
        self.modseqs = {}
        self.unseen = []
        self.recent = 0
        read = box.read
        prefix = box.prefix(name)
        before = previous.index.entries if previous is not None else {}
        for seq, (unique, entry) in enumerate(index.entries.items(), 1):
            old = before.get(unique)
            if previous is not None and old is not None and (old is entry or old == entry):
                msg = previous.by_uid[entry.uid]  # unchanged: the same object again
            else:
                load = _loader(read, name, entry)
                head = HeaderSource(load, headers, prefix + entry.key, (box, name, entry))
                msg = Message(entry, load, head=head)
            self.messages.append(msg)
            self.by_uid[entry.uid] = msg
            self.modseqs[entry.uid] = entry.modseq
            if "\\Seen" not in entry.flags:
                self.unseen.append(seq)
            if entry.uid >= index.first_recent:
                self.recent += 1

    def changed_since(self, modseq: int) -> list[Message]:
        """The messages added or changed after ``modseq`` (RFC 7162's MODSEQ of each)."""
        return [m for m in self.messages if m.modseq > modseq]


def _loader(
    read: Callable[[str, Entry], Awaitable[bytes]], name: str, entry: Entry
) -> Callable[[], Awaitable[bytes]]:
    return lambda: read(name, entry)


class HeaderSource:
    """Where a message's header block comes from: the replica's cache, else the object."""

    __slots__ = ("cache", "key", "load", "stored")

    def __init__(
        self,
        load: Callable[[], Awaitable[bytes]],
        cache: HeaderCache,
        key: str,
        stored: tuple[AccountMailbox, str, Entry] | None = None,
    ) -> None:
        self.load = load
        self.cache = cache
        self.key = key
        self.stored = stored  # where the object is, for ranged reads (None: read it whole)

    def ranged(self, offset: int, length: int | None) -> AsyncIterator[bytes]:
        if self.stored is None:
            return self._whole(offset, length)
        box, folder, entry = self.stored
        return box.read_range(folder, entry, offset, length)

    async def _whole(self, offset: int, length: int | None) -> AsyncIterator[bytes]:
        data = await self.load()
        yield data[offset : None if length is None else offset + length]

    async def part(self, offset: int, length: int) -> bytes:
        """What :meth:`ranged` gives, in one read."""
        if self.stored is None:
            return (await self.load())[offset : offset + length]
        box, folder, entry = self.stored
        return await box.read_part(folder, entry, offset, length)

    async def stored_size(self) -> int:
        if self.stored is None:
            return len(await self.load())
        box, folder, entry = self.stored
        return await box.stored_size(folder, entry)

    async def _read_head(self) -> bytes:
        """The header block, read in ranges: the whole object only when no header end is
        found in the first :data:`MAX_HEADER_KEPT` octets (pymap's header is then all of it)."""
        for size in HEAD_READS:
            block = head_of(await self.part(0, size), size)
            if block is not None:
                return block
        return header_block(with_crlf(await self.load()))

    def cached(self) -> bool:
        return self.cache.holds(self.key)

    async def values(self, name: bytes) -> Sequence[str]:
        """The text of what :meth:`HeaderOnly.get_header` gives for ``name`` (what a SEARCH
        looks in), kept once computed."""
        found = self.cache.values(self.key, name)
        if found is not None:
            return found
        block = await self()
        # their text alone: a parsed address header holds its whole parse tree (kilobytes)
        values = tuple(str(v) for v in header_values(block, name, lambda: folds_of(block)))
        if self.cached():  # not for an object expunged meanwhile
            self.cache.put_values(self.key, name, values)
        return values

    async def __call__(self) -> bytes:
        block = self.cache.get(self.key)
        if block is None:
            try:
                block = await self._read_head()
            except BlobNotFound:
                return b""  # expunged meanwhile: an empty message, as load_content has it
            self.cache.put(self.key, block)
        return block


async def read_heads(heads: Sequence[HeaderSource]) -> None:
    """Read the header blocks of ``heads`` into their cache: those in the store in batches
    of :data:`READ_AT_ONCE` (one batch read while the previous is cut into blocks), each
    object's first :data:`HEAD_READS` octets; the rest one by one, :data:`WARM_AT_ONCE` at
    a time (longer headers, and sources that are not in the store)."""
    stored = [h for h in heads if h.stored is not None]
    rest = [h for h in heads if h.stored is None]
    size = HEAD_READS[0]
    batches = [stored[at : at + READ_AT_ONCE] for at in range(0, len(stored), READ_AT_ONCE)]
    reading: asyncio.Future[list[bytes | None]] | None = None
    try:
        for number, batch in enumerate(batches):
            if reading is None:
                reading = asyncio.ensure_future(_read_batch(batch, size))
            parts = await reading
            reading = None
            if number + 1 < len(batches):
                reading = asyncio.ensure_future(_read_batch(batches[number + 1], size))
            for head, part in zip(batch, parts, strict=True):
                block = None if part is None else head_of(part, size)
                if block is not None:
                    head.cache.put(head.key, block)
                elif part is not None:
                    rest.append(head)  # no header end in the first octets: read on
                # None: gone meanwhile; the search's own read finds the empty message
    finally:
        if reading is not None:
            reading.cancel()
    for start in range(0, len(rest), WARM_AT_ONCE):
        await asyncio.gather(*(h() for h in rest[start : start + WARM_AT_ONCE]))


async def _read_batch(heads: Sequence[HeaderSource], size: int) -> list[bytes | None]:
    """The first ``size`` octets of each of ``heads`` (all in the store), in order."""
    out: list[bytes | None] = [None] * len(heads)
    where: dict[tuple[int, str], list[int]] = {}
    for i, head in enumerate(heads):
        assert head.stored is not None
        box, folder, _ = head.stored
        where.setdefault((id(box), folder), []).append(i)
    for places in where.values():
        box, folder, _ = heads[places[0]].stored  # type: ignore[misc]
        entries = [heads[i].stored[2] for i in places]  # type: ignore[index]
        for i, part in zip(places, await box.read_parts(folder, entries, 0, size), strict=True):
            out[i] = part
    return out


class Views:
    """The :class:`View` of each index revision sessions of this replica look at, bounded by
    the messages they hold (an index no session uses any more is dropped first)."""

    def __init__(self, max_messages: int = 200_000) -> None:
        self._max = max_messages
        self._held = 0
        self._views: OrderedDict[int, View] = OrderedDict()
        self._latest: dict[str, View] = {}  # the last view made of each folder, by its prefix
        self.headers = HeaderCache()

    def of(
        self, box: AccountMailbox, name: str, index: FolderIndex, previous: View | None = None
    ) -> View:
        """The view of ``index``; a new one reuses the message objects of unchanged entries of
        ``previous`` or, for a session's first look, of the folder's last view."""
        key = id(index)  # the view holds its index, so the id is not reused meanwhile
        view = self._views.get(key)
        if view is not None and view.index is index:
            self._views.move_to_end(key)
            return view
        folder = box.prefix(name)
        if previous is None:
            previous = self._latest.get(folder)
        view = self._views[key] = View(box, name, index, self.headers, previous)
        self._latest[folder] = view
        self._held += len(view.messages)
        while self._held > self._max and len(self._views) > 1:
            _, old = self._views.popitem(last=False)
            self._held -= len(old.messages)
            for where, latest in list(self._latest.items()):
                if latest is old:
                    del self._latest[where]
        return view


class Folder:
    """pymap's ``MailboxDataInterface`` for one folder, as one session sees it."""

    def __init__(
        self, box: AccountMailbox, name: str, index: FolderIndex, changed: Event, sets: SelectedSets
    ) -> None:
        self.box = box
        self.name = name
        self._index = index
        self._changed = changed
        self._synced = time.monotonic()
        self._sets = sets
        self._view = sets.views.of(box, name, index)
        self._claimed: range | None = None  # the \Recent UIDs the opening look claimed

    # -- identity ------------------------------------------------------------------------------

    @property
    def mailbox_id(self) -> ObjectId:
        """RFC 8474's MAILBOXID, and how pymap tells the selected folder from another: one per
        folder and UIDVALIDITY (folders made in the same second share a UIDVALIDITY)."""
        key = account_key(self.box.domain, self.box.account)
        named = f"{key}/{key_segment(self.name)}/{self._index.uidvalidity}"
        return ObjectId(b"F" + hashlib.sha256(named.encode()).hexdigest()[:24].encode())

    @property
    def readonly(self) -> bool:
        return False

    @property
    def uid_validity(self) -> int:
        return self._index.uidvalidity

    @property
    def permanent_flags(self) -> frozenset[Flag]:
        return keywords.permanent_flags(self._index)  # system flags, keywords and \*

    @property
    def session_flags(self) -> frozenset[Flag]:
        return frozenset({Recent})

    @property
    def selected_set(self) -> SelectedSet:
        return self._sets.get(self.box.domain, self.box.account, self.name)

    # -- the index -----------------------------------------------------------------------------

    def _use(self, index: FolderIndex) -> None:
        self._index = index
        self._view = self._sets.views.of(self.box, self.name, index, self._view)

    async def refresh(self, *, full: bool) -> None:
        try:
            if full or self._changed.is_set() or time.monotonic() - self._synced > RESYNC_SECONDS:
                self._changed.clear()
                self._use(await self.box.sync(self.name))
                self._synced = time.monotonic()
            else:
                self._use(await self.box.index(self.name))
        except FolderMissing as err:
            raise MailboxNotFound(self.name) from err
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err

    def messages(self) -> list[Message]:
        return self._view.messages

    async def update_selected(
        self, selected: SelectedMailbox, *, wait_on: Event | None = None
    ) -> SelectedMailbox:
        if wait_on is not None:
            if not self._changed.is_set() and not wait_on.is_set():
                await wait_on.or_event(self._changed).wait(timeout=IDLE_RESYNC)
            if wait_on.is_set() and not self._changed.is_set():
                return selected  # DONE: nothing new to say
            await self.refresh(full=True)
        else:
            await self.refresh(full=False)
        current = (self._index.uidvalidity, self._index.highest_modseq)
        before = selected.mod_sequence
        if before != current:
            selected.mod_sequence = current
            if isinstance(before, tuple) and before[0] == current[0]:
                # every change to an entry gives it a MODSEQ above the index's highest, so
                # pymap is told only what changed (and what went) since the session last looked
                gone = selected.messages._uids - self._view.by_uid.keys()
                selected.add_updates(self._view.changed_since(before[1]), gone)
            else:
                selected.set_messages(self.messages())
        return selected

    # -- changes -------------------------------------------------------------------------------

    async def append(self, append_msg: AppendMessage, *, recent: bool = False) -> Message:
        when = append_msg.when.timestamp() if append_msg.when else None
        flags = from_flags(append_msg.flag_set)
        try:
            _, uid = await self.box.append(self.name, bytes(append_msg.literal), flags, when)
        except FolderMissing as err:
            raise MailboxNotFound(self.name, try_create=True) from err
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        await self.refresh(full=False)
        return self._view.by_uid[uid]

    async def copy_many(self, uids: Sequence[int], destination: Folder) -> list[tuple[int, int]]:
        try:
            _, pairs = await self.box.copy(self.name, uids, destination.name)
        except FolderMissing as err:
            raise MailboxNotFound(destination.name, try_create=True) from err
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        return pairs

    async def copy(self, uid: int, destination: Folder, *, recent: bool = False) -> int | None:
        pairs = await self.copy_many([uid], destination)
        return pairs[0][1] if pairs else None

    async def move(self, uid: int, destination: Folder, *, recent: bool = False) -> int | None:
        dest_uid = await self.copy(uid, destination)
        if dest_uid is not None:
            await self.delete([uid])
        return dest_uid

    async def get(self, uid: int, cached_msg: CachedMessage) -> Message:
        found = self._view.by_uid.get(uid)
        if found is None:
            entry = Entry(uid, 0, from_flags(cached_msg.permanent_flags), 0, 0, "")
            return Message(entry, None, expunged=True)
        return found

    async def update(
        self, uid: int, cached_msg: CachedMessage, flag_set: frozenset[Flag], mode: FlagOp
    ) -> Message:
        await self.set_flags([uid], flag_set, mode)
        return await self.get(uid, cached_msg)

    @property
    def state(self) -> FolderIndex:
        """The index this session last read (QRESYNC, services/imapd/qresync.py)."""
        return self._index

    @property
    def highest_modseq(self) -> int:
        return self._index.highest_modseq

    def modseqs(self) -> dict[int, int]:
        return dict(self._view.modseqs)

    async def set_flags(
        self,
        uids: Sequence[int],
        flag_set: frozenset[Flag],
        mode: FlagOp,
        *,
        unchanged_since: int | None = None,
    ) -> None:
        flags = from_flags(flag_set)
        try:
            self._use(
                await self.box.set_flags(
                    self.name, uids, flags, MODES[mode], unchanged_since=unchanged_since
                )
            )
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err

    async def delete(self, uids: Iterable[int]) -> None:
        try:
            await self.box.expunge(self.name, uids)
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        await self.refresh(full=False)

    async def claim_recent(self, selected: SelectedMailbox) -> None:
        claimed, self._claimed = self._claimed, None
        if claimed is None:  # not claimed already by the look that opened the folder
            try:
                claimed = await self.box.claim_recent(self.name)
            except (Temporary, StoreUnavailable) as err:
                raise temporary(err) from err
        for uid in claimed:
            selected.session_flags.add_recent(uid)

    async def cleanup(self) -> None:
        pass

    def stored_size(self, uids: Iterable[int]) -> int:
        """What copies of ``uids`` would add to the usage, at most (RFC822.SIZE counts CRLF
        line ends where the store keeps LF)."""
        by_uid = self._view.by_uid
        return sum(by_uid[u].size for u in uids if u in by_uid)

    async def snapshot(self) -> MailboxSnapshot:
        view = self._view
        unseen, recent = view.unseen, view.recent
        return keywords.Snapshot(
            self.mailbox_id,
            self.readonly,
            self.uid_validity,
            self.permanent_flags,
            self.session_flags,
            len(view.messages),
            recent,
            len(unseen),
            unseen[0] if unseen else None,
            self._index.next_uid,
        )

    async def warm_headers(self, selected: SelectedMailbox, seq_set: SequenceSet) -> None:
        """Read the headers a SEARCH will look at (the search itself then finds them in the
        replica's :class:`HeaderCache`); nothing to look at once every message's header has
        been found kept and none has been let go since."""
        view = self._view
        cache = self._sets.views.headers
        if view.headers_read == cache.dropped:
            return
        by_uid = view.by_uid
        found = [by_uid.get(c.uid) for _, c in selected.messages.get_all(seq_set)]
        heads = [m._head for m in found if m is not None and m._head and not m._head.cached()]
        try:
            await read_heads(heads)
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        whole = len(found) == len(view.messages) and all(m is not None for m in found)
        if whole and all(h.cached() for h in heads):
            view.headers_read = cache.dropped

    async def search_headers(
        self, selected: SelectedMailbox, seq_set: SequenceSet, tests: Sequence[tuple[bytes, str]]
    ) -> list[tuple[int, Message]]:
        """pymap's SEARCH for keys that are all ``HEADER name value`` (its
        ``HeaderSearchCriteria``: the value in any of the fields, ASCII case-insensitively),
        over header values the replica keeps once computed."""
        patterns = [(n, re.compile(re.escape(v), re.I | re.A).search) for n, v in tests]
        by_uid = self._view.by_uid
        found: list[tuple[int, Message]] = []
        for seq, cached in selected.messages.get_all(seq_set):
            msg = by_uid.get(cached.uid)
            head = None if msg is None else msg._head
            if msg is None or head is None:
                continue  # expunged: pymap's empty message matches no header
            try:
                for name, search in patterns:
                    values: Sequence[str] | None = head.cache.values(head.key, name)
                    if values is None:
                        values = await head.values(name)
                    for value in values:
                        if search(value):
                            break
                    else:
                        break  # no value of this header has it
                else:
                    found.append((seq, msg))
            except (Temporary, StoreUnavailable) as err:
                raise temporary(err) from err
        return found

    async def find(
        self, seq_set: SequenceSet, selected: SelectedMailbox
    ) -> AsyncIterable[tuple[int, Message]]:
        for seq, cached_msg in selected.messages.get_all(seq_set):
            yield seq, await self.get(cached_msg.uid, cached_msg)

    async def find_deleted(self, seq_set: SequenceSet, selected: SelectedMailbox) -> Sequence[int]:
        session_flags = selected.session_flags
        return [
            msg.uid
            async for _, msg in self.find(seq_set, selected)
            if not msg.expunged and Deleted in msg.get_flags(session_flags)
        ]


class SelectedSets:
    """One ``SelectedSet`` per folder per replica: how pymap tells sessions of the same folder
    apart for ``\\Recent`` (RFC 3501 2.3.2)."""

    def __init__(self) -> None:
        self._sets: dict[tuple[str, str, str], SelectedSet] = {}
        self.views = Views()  # and the replica's shared views of index revisions

    def get(self, domain: str, account: str, folder: str) -> SelectedSet:
        return self._sets.setdefault((domain, account, folder), SelectedSet())


class Folders:
    """pymap's ``MailboxSetInterface``: the account's folders."""

    def __init__(
        self, box: AccountMailbox, register: Register, sets: SelectedSets, limit: Limit = no_limit
    ) -> None:
        self.box = box
        self._register = register
        self._sets = sets
        self._limit = limit
        self._open: dict[str, Folder] = {}

    # -- quota (RFC 9208) ------------------------------------------------------------------------

    async def quota(self) -> Quota:
        """The directory's limit and the account's usage, read now (``qmesh user quota``
        applies to the next command)."""
        try:
            limit = await self._limit()
            used = await self.box.usage() if limit is not None else 0
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        return Quota(used, limit)

    async def check_room(self, size: int) -> None:
        """``NO [OVERQUOTA]`` if ``size`` more octets do not fit."""
        quota = await self.quota()
        if exceeds(quota.limit, quota.used, size):
            raise OverQuota()

    @property
    def delimiter(self) -> str:
        return DELIMITER

    async def _names(self, subscribed: bool = False) -> list[str]:
        try:
            record = await self.box.record()
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        names = record.subscribed() if subscribed else list(record.folders)
        return [n for n in names if n != INBOX]

    async def exists(self, name: str) -> bool:
        try:
            return (await self.box.record()).exists(check_name(name))
        except BadFolderName:
            return False
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        await self.box.set_subscribed(check(name), subscribed)

    async def list_subscribed(self) -> ListTree:
        return ListTree(self.delimiter).update(INBOX, *await self._names(True))

    async def list_mailboxes(self) -> ListTree:
        return ListTree(self.delimiter).update(INBOX, *await self._names())

    async def get_mailbox(self, name: str, *, claim: bool = False) -> Folder:
        """The folder, listed at the session's first look; with ``claim`` (a read-write
        SELECT) that look also claims the \\Recent UIDs, for :meth:`Folder.claim_recent`."""
        try:
            name = check_name(name)
        except BadFolderName as err:
            raise KeyError(name) from err
        folder = self._open.get(name)
        if folder is not None:  # a later command of the session: the index, listed if told
            folder._claimed = None
            await folder.refresh(full=False)
            return folder
        try:
            if not (await self.box.record()).exists(name):
                raise KeyError(name)
            # the session's first look lists the folder
            claimed = None
            if claim:
                index, claimed = await self.box.sync_and_claim(name)
            else:
                index = await self.box.sync(name)
        except FolderMissing as err:
            raise KeyError(name) from err
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        changed = subsystem.get().new_event()
        self._register(changed)
        folder = self._open[name] = Folder(self.box, name, index, changed, self._sets)
        folder._claimed = claimed
        return folder

    async def add_mailbox(self, name: str) -> ObjectId:
        try:
            await self.box.create_folder(check(name))
        except FolderExists as err:
            raise ValueError(name) from err
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        return (await self.get_mailbox(name)).mailbox_id

    async def delete_mailbox(self, name: str) -> None:
        self._open.pop(name, None)
        try:
            await self.box.delete_folder(check(name))
        except FolderMissing as err:
            raise KeyError(name) from err
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err

    async def rename_mailbox(self, before: str, after: str) -> None:
        self._open.clear()
        try:
            await self.box.rename_folder(check(before), check(after))
        except FolderMissing as err:
            raise KeyError(before) from err
        except FolderExists as err:
            raise ValueError(after) from err
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err


def check(name: str) -> str:
    try:
        return check_name(name)
    except BadFolderName as err:
        raise NotAllowedError(str(err)) from err
