"""The pymap session of one login: batched flag changes and copies (#13).

pymap's ``BaseSession`` changes flags one message at a time; here one STORE or one FETCH that
sets ``\\Seen`` is one compare-and-set on the folder index, and one COPY or MOVE one index
change in the destination, however many messages it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pymap.backend.session import BaseSession
from pymap.config import IMAPConfig
from pymap.exceptions import MailboxNotFound, MailboxReadOnly
from pymap.flags import FlagOp, PermanentFlags, SessionFlags
from pymap.mailbox import MailboxSnapshot
from pymap.parsing.message import AppendMessage
from pymap.parsing.response.code import AppendUid, CopyUid
from pymap.parsing.specials import FetchRequirement, SearchKey, SequenceSet
from pymap.parsing.specials.flag import Flag, Seen
from pymap.search import HeaderSearchCriteria, SearchCriteriaSet, SearchParams
from pymap.selected import SelectedMailbox

from qmesh.mailbox.folders import SPECIAL_USE
from qmesh.mailbox.index import FolderIndex
from services.imapd import keywords
from services.imapd.backend import Folder, Folders, Message
from services.imapd.qresync import QresyncSelected

# RFC 6154: the attribute of each special-use folder, as pymap writes LIST attributes
SPECIAL_USE_ATTRIBUTES = {name: attr[1:].encode() for name, attr in SPECIAL_USE.items()}


class Session(BaseSession[Message]):
    no_recent = False  # IMAP4rev2 enabled: \Recent is not claimed (services/imapd/rev2.py)

    def __init__(self, owner: str, config: IMAPConfig, folders: Folders) -> None:
        super().__init__(owner)
        self._config = config
        self._folders = folders

    @property
    def config(self) -> IMAPConfig:
        return self._config

    @property
    def mailbox_set(self) -> Folders:
        return self._folders

    async def _folder(self, selected: SelectedMailbox) -> Folder:
        folder = await self._get_selected(selected)
        assert isinstance(folder, Folder)
        return folder

    async def select_mailbox(
        self, name: str, readonly: bool = False
    ) -> tuple[MailboxSnapshot, SelectedMailbox]:
        """pymap's SELECT with :class:`~services.imapd.qresync.QresyncSelected`."""
        try:
            claim = not readonly and not self.no_recent
            folder = await self._folders.get_mailbox(name, claim=claim)
        except KeyError as err:
            raise MailboxNotFound(name) from err
        selected = QresyncSelected(
            folder.mailbox_id,
            readonly or folder.readonly,
            PermanentFlags(folder.permanent_flags),
            SessionFlags(folder.session_flags),
            selected_set=folder.selected_set,
            lookup=name,
        )
        if isinstance(folder, Folder):
            selected.keywords = keywords.in_folder(folder.state)
        if not selected.readonly and not self.no_recent:
            await folder.claim_recent(selected)
        snapshot = await folder.snapshot()
        return snapshot, await folder.update_selected(selected)

    async def list_mailboxes(
        self,
        ref_name: str,
        filter_: str,
        subscribed: bool = False,
        selected: SelectedMailbox | None = None,
    ) -> tuple[Iterable[tuple[str, str | None, Sequence[bytes]]], SelectedMailbox | None]:
        """LIST and LSUB with RFC 6154's ``\\Sent``, ``\\Drafts``, ``\\Trash`` and ``\\Junk``
        (Dovecot marks them in LSUB too)."""
        found, updates = await super().list_mailboxes(ref_name, filter_, subscribed, selected)
        marked = [
            (name, sep, [*attrs, SPECIAL_USE_ATTRIBUTES[name]])
            if name in SPECIAL_USE_ATTRIBUTES
            else (name, sep, attrs)
            for name, sep, attrs in found
        ]
        return marked, updates

    async def highest_modseq(self, selected: SelectedMailbox) -> int:
        return (await self._folder(selected)).highest_modseq

    async def folder_highest_modseq(self, name: str) -> int:
        """HIGHESTMODSEQ of a folder STATUS has just looked at."""
        folder = await self._folders.get_mailbox(name)
        return folder.highest_modseq

    async def modseqs(self, selected: SelectedMailbox) -> dict[int, int]:
        """UID -> MODSEQ of the selected folder, as its index stands now."""
        folder = await self._folder(selected)
        await folder.refresh(full=False)
        return folder.modseqs()

    async def folder_size(self, name: str) -> tuple[int, int]:
        """STATUS SIZE and DELETED of a folder STATUS has just looked at (RFC 8438, 9051)."""
        folder = await self._folders.get_mailbox(name)
        entries = folder.state.entries.values()
        return sum(e.size for e in entries), sum(1 for e in entries if "\\Deleted" in e.flags)

    async def folder_index(self, selected: SelectedMailbox) -> FolderIndex:
        """The selected folder's index as it stands now (QRESYNC's expunged UIDs)."""
        folder = await self._folder(selected)
        await folder.refresh(full=False)
        return folder.state

    async def search_mailbox(
        self, selected: SelectedMailbox, keys: frozenset[SearchKey]
    ) -> tuple[Iterable[tuple[int, Message]], SelectedMailbox]:
        """pymap's SEARCH, with the headers a header-only search needs read concurrently
        first (pymap reads one message at a time)."""
        need = FetchRequirement.reduce(key.requirement for key in keys)
        if need.has_all(FetchRequirement.HEADER) and need.has_none(FetchRequirement.BODY):
            folder = await self._folder(selected)
            params = SearchParams(selected, disabled=self.config.disable_search_keys)
            criteria = SearchCriteriaSet(keys, params)
            await folder.warm_headers(selected, criteria.sequence_set)
            tests = [
                (c.name, c.value)
                for c in criteria.all_criteria
                if type(c) is HeaderSearchCriteria and isinstance(c, HeaderSearchCriteria)
            ]
            if tests and len(tests) == len(criteria.all_criteria):
                found = await folder.search_headers(selected, criteria.sequence_set, tests)
                return found, await folder.update_selected(selected)
        return await super().search_mailbox(selected, keys)

    async def fetch_messages(
        self, selected: SelectedMailbox, sequence_set: SequenceSet, set_seen: bool
    ) -> tuple[Iterable[tuple[int, Message]], SelectedMailbox]:
        folder = await self._folder(selected)
        found = selected.messages.get_all(sequence_set)
        if set_seen:
            unseen = [m.uid for _, m in found if Seen not in m.permanent_flags]
            if unseen:
                await folder.set_flags(unseen, frozenset({Seen}), FlagOp.ADD)
        ret = [(seq, await folder.get(m.uid, m)) for seq, m in found]
        return ret, await folder.update_selected(selected)

    async def update_flags(
        self,
        selected: SelectedMailbox,
        sequence_set: SequenceSet,
        flag_set: frozenset[Flag],
        mode: FlagOp = FlagOp.REPLACE,
        *,
        unchanged_since: int | None = None,
    ) -> tuple[Iterable[tuple[int, Message]], SelectedMailbox]:
        if selected.readonly:
            raise MailboxReadOnly()
        folder = await self._folder(selected)
        keywords.check_system(flag_set)
        permanent = selected.permanent_flags & flag_set
        if mode != FlagOp.DELETE:
            keywords.check_room(folder.state, permanent)
        found = selected.messages.get_all(sequence_set)
        uids = [m.uid for _, m in found]
        await folder.set_flags(uids, permanent, mode, unchanged_since=unchanged_since)
        messages: list[tuple[int, Message]] = []
        for seq, cached in found:
            msg = await folder.get(cached.uid, cached)
            if not msg.expunged:
                selected.session_flags.update(cached.uid, flag_set, mode)
            messages.append((seq, msg))
        return messages, await folder.update_selected(selected)

    async def _copy(
        self, selected: SelectedMailbox, sequence_set: SequenceSet, mailbox: str, *, move: bool
    ) -> tuple[CopyUid | None, SelectedMailbox]:
        folder = await self._folder(selected)
        if move and selected.readonly:
            raise MailboxReadOnly()
        dest = await self._get_mailbox(mailbox, try_create=True)
        assert isinstance(dest, Folder)
        uids = [uid for _, uid in selected.messages.get_uids(sequence_set)]
        if not move:  # a MOVE within the account adds nothing to its usage
            await self._folders.check_room(folder.stored_size(uids))
        pairs = await folder.copy_many(uids, dest) if uids else []
        if move and pairs:
            await folder.delete([src for src, _ in pairs])
        copy_uid = CopyUid(dest.uid_validity, pairs) if pairs else None
        return copy_uid, await folder.update_selected(selected)

    async def append_messages(
        self,
        name: str,
        messages: Sequence[AppendMessage],
        selected: SelectedMailbox | None = None,
    ) -> tuple[AppendUid, SelectedMailbox | None]:
        size = sum(len(bytes(m.literal).replace(b"\r\n", b"\n")) for m in messages)
        await self._folders.check_room(size)  # stored with LF line ends, as local writes
        flags = frozenset(f for m in messages for f in m.flag_set)
        keywords.check_system(flags)
        if keywords.keywords_of(flags):
            try:
                dest = await self._folders.get_mailbox(name)
            except KeyError:
                dest = None  # pymap answers NO [TRYCREATE]
            if isinstance(dest, Folder):
                keywords.check_room(dest.state, flags)
        return await super().append_messages(name, messages, selected)

    async def copy_messages(
        self, selected: SelectedMailbox, sequence_set: SequenceSet, mailbox: str
    ) -> tuple[CopyUid | None, SelectedMailbox]:
        return await self._copy(selected, sequence_set, mailbox, move=False)

    async def move_messages(
        self, selected: SelectedMailbox, sequence_set: SequenceSet, mailbox: str
    ) -> tuple[CopyUid | None, SelectedMailbox]:
        return await self._copy(selected, sequence_set, mailbox, move=True)
