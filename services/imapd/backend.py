"""pymap's backend interfaces over :mod:`qmesh.mailbox` (#13).

pymap parses commands, keeps the selected-mailbox view of a session (sequence numbers,
untagged EXISTS/EXPUNGE/FETCH) and evaluates FETCH and SEARCH; this module answers its
questions from the folder index in KV and the message objects in the mail bucket. No state is
kept here beyond one session's copy of the index it last read.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

from pymap.concurrent import Event
from pymap.context import subsystem
from pymap.exceptions import MailboxNotFound, NotAllowedError, ResponseError, TemporaryFailure
from pymap.flags import FlagOp
from pymap.interfaces.message import CachedMessage
from pymap.listtree import ListTree
from pymap.mailbox import MailboxSnapshot
from pymap.message import BaseLoadedMessage, BaseMessage
from pymap.mime import MessageContent
from pymap.parsing.message import AppendMessage
from pymap.parsing.response import ResponseCode, ResponseNo
from pymap.parsing.response.fetch import (
    BodyStructure,
    ContentBodyStructure,
    MessageBodyStructure,
    TextBodyStructure,
)
from pymap.parsing.specials import FetchRequirement, ObjectId, SequenceSet
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
from services.imapd import keywords

RESYNC_SECONDS = 30.0  # a selected folder is listed again at least this often (pop3d's DELE)
IDLE_RESYNC = 60.0  # and while IDLE, even if no announcement came
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


def to_flags(flags: Iterable[str]) -> frozenset[Flag]:
    return frozenset(Flag(f) for f in flags)


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


class Message(BaseMessage):
    """One message of a folder: metadata from the index, content read only when asked for."""

    __slots__ = ["_load", "modseq"]

    def __init__(
        self,
        entry: Entry,
        load: Callable[[], Awaitable[bytes]] | None,
        *,
        expunged: bool = False,
    ) -> None:
        self.modseq = entry.modseq  # CONDSTORE (services/imapd/condstore.py)
        super().__init__(
            entry.uid,
            datetime.fromtimestamp(entry.when, UTC),
            to_flags(entry.flags),
            email_id=None,
            expunged=expunged,
        )
        self._load = load

    async def load_content(self, requirement: FetchRequirement) -> LoadedMessage:
        content = None
        if self._load is not None and not requirement.has_none(FetchRequirement.CONTENT):
            try:
                content = MessageContent.parse(with_crlf(await self._load()))
            except BlobNotFound:
                content = MessageContent.parse(b"")  # expunged meanwhile: an empty message
            except (Temporary, StoreUnavailable) as err:
                raise temporary(err) from err
        return LoadedMessage(self, requirement, content)


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
        self._by_uid = index.by_uid()

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
        self._by_uid = index.by_uid()

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

    def _message(self, unique: str, entry: Entry) -> Message:
        return Message(entry, lambda: self.box.read(self.name, entry))

    def messages(self) -> list[Message]:
        return [self._message(u, e) for u, e in self._index.entries.items()]

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
        if selected.mod_sequence != (self._index.uidvalidity, self._index.highest_modseq):
            selected.mod_sequence = (self._index.uidvalidity, self._index.highest_modseq)
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
        return self._by_uid_message(uid)

    def _by_uid_message(self, uid: int) -> Message:
        unique, entry = self._by_uid[uid]
        return self._message(unique, entry)

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
        found = self._by_uid.get(uid)
        if found is None:
            entry = Entry(uid, 0, from_flags(cached_msg.permanent_flags), 0, 0, "")
            return Message(entry, None, expunged=True)
        return self._message(*found)

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
        return {e.uid: e.modseq for e in self._index.entries.values()}

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
        return sum(self._by_uid[u][1].size for u in uids if u in self._by_uid)

    async def snapshot(self) -> MailboxSnapshot:
        entries = list(self._index.entries.values())
        unseen = [seq for seq, e in enumerate(entries, 1) if "\\Seen" not in e.flags]
        recent = sum(1 for e in entries if e.uid >= self._index.first_recent)
        return keywords.Snapshot(
            self.mailbox_id,
            self.readonly,
            self.uid_validity,
            self.permanent_flags,
            self.session_flags,
            len(entries),
            recent,
            len(unseen),
            unseen[0] if unseen else None,
            self._index.next_uid,
        )

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

    async def get_mailbox(self, name: str) -> Folder:
        try:
            name = check_name(name)
        except BadFolderName as err:
            raise KeyError(name) from err
        folder = self._open.get(name)
        if folder is not None:  # a later command of the session: the index, listed if told
            await folder.refresh(full=False)
            return folder
        try:
            if not (await self.box.record()).exists(name):
                raise KeyError(name)
            index = await self.box.sync(name)  # the session's first look lists the folder
        except FolderMissing as err:
            raise KeyError(name) from err
        except (Temporary, StoreUnavailable) as err:
            raise temporary(err) from err
        changed = subsystem.get().new_event()
        self._register(changed)
        folder = self._open[name] = Folder(self.box, name, index, changed, self._sets)
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
