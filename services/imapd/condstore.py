"""CONDSTORE (RFC 7162 3.1) over the MODSEQ the folder index keeps for every message (#13).

pymap 0.36.7 parses SELECT, FETCH and STORE modifiers (``(CONDSTORE)``, ``(CHANGEDSINCE n)``,
``(UNCHANGEDSINCE n)``) but does nothing with them, and knows neither the FETCH item ``MODSEQ``
nor the SEARCH key ``MODSEQ``. :func:`install` teaches its parsers and evaluators those two
names; :class:`CondstoreState` answers the modifiers:

- ``SELECT``/``EXAMINE`` with ``(CONDSTORE)``, or any later SELECT once CONDSTORE is on, adds
  ``* OK [HIGHESTMODSEQ n]``.
- ``FETCH ... (MODSEQ)`` returns ``MODSEQ (n)``; ``(CHANGEDSINCE n)`` keeps only messages
  changed after ``n`` and adds ``MODSEQ``.
- ``STORE ... (UNCHANGEDSINCE n)`` leaves alone every message changed after ``n`` (checked
  again inside the index's compare-and-set) and names them in ``OK [MODIFIED set]``; once
  CONDSTORE is on, a STORE's FETCH responses carry ``MODSEQ`` (also with ``.SILENT``).
- ``SEARCH MODSEQ n`` matches messages changed at or after ``n`` and ends the SEARCH response
  with ``(MODSEQ highest)`` of what it found.
- ``STATUS ... (HIGHESTMODSEQ)`` (pymap's StatusAttribute learns the name).

Any of these turns CONDSTORE on for the session, as ENABLE CONDSTORE does; from then on the
FETCH responses about other sessions' changes carry MODSEQ as well (:class:`ModSeqSelected`).
Not done: the ``priv``/``shared`` entry names of SEARCH MODSEQ (read and ignored). QRESYNC builds
on this in :mod:`services.imapd.qresync`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import pymap.search as pymap_search
from pymap.bytes import MaybeBytes
from pymap.fetch import DynamicFetchValue, MessageAttributes
from pymap.imap.state import ConnectionState
from pymap.interfaces.message import LoadedMessageInterface, MessageInterface
from pymap.parsing import Params
from pymap.parsing.command import Command
from pymap.parsing.command.auth import SelectCommand, StatusCommand
from pymap.parsing.command.select import FetchCommand, SearchCommand, StoreCommand
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.primitives import List, Number
from pymap.parsing.response import (
    CommandResponse,
    ResponseBad,
    ResponseCode,
    ResponseOk,
    UntaggedResponse,
)
from pymap.parsing.response.specials import FetchResponse, SearchResponse, StatusResponse
from pymap.parsing.specials import (
    ExtensionOptions,
    FetchAttribute,
    FetchRequirement,
    FetchValue,
    SearchKey,
    SequenceSet,
    StatusAttribute,
)
from pymap.selected import SelectedMailbox

if TYPE_CHECKING:
    from services.imapd.session import Session

CONDSTORE = b"CONDSTORE"
_FETCH_MODSEQ = re.compile(rb" *MODSEQ(?=[\s)]|$)", re.IGNORECASE)
_SEARCH_MODSEQ = re.compile(
    rb' ?(NOT +)?MODSEQ +(?:"/flags/\\{0,2}[A-Za-z0-9$_-]{1,64}" +(?:priv|shared|all) +)?'
    rb"([0-9]{1,20})(?=[\s)]|$)",
    re.IGNORECASE,
)
MAX_MODSEQ = 2**63 - 1  # RFC 7162 7: mod-sequence-value is 1*DIGIT up to 2^63-1

Ret = tuple[CommandResponse, SelectedMailbox | None]


class ModSeqAttribute(FetchAttribute):
    """The FETCH item ``MODSEQ``: from the index, never the message content."""

    def __init__(self) -> None:
        super().__init__(b"MODSEQ")

    @property
    def requirement(self) -> FetchRequirement:
        return FetchRequirement.METADATA


MODSEQ = ModSeqAttribute()


def modseq_of(msg: object) -> int:
    return int(getattr(msg, "modseq", 0))


def found(messages: Iterable[tuple[int, Any]], *, uid: bool) -> tuple[list[int], int, bool]:
    """A SEARCH's numbers (UIDs or sequence numbers), their highest MODSEQ, and whether one of
    them was expunged meanwhile (``EXPUNGEISSUED``)."""
    ids: list[int] = []
    highest = 0
    expunged = False
    for msg_seq, msg in messages:
        expunged = expunged or msg.expunged
        ids.append(msg.uid if uid else msg_seq)
        highest = max(highest, modseq_of(msg))
    return ids, highest, expunged


class ModSeqValue(DynamicFetchValue):
    def get_value(self) -> List:
        return List([Number(modseq_of(self.message))])


class ModSeqCriteria(pymap_search.SearchCriteria):
    def __init__(self, since: int, params: pymap_search.SearchParams) -> None:
        super().__init__(params)
        self.since = since

    def matches(
        self, msg_seq: int, msg: MessageInterface, loaded_msg: LoadedMessageInterface
    ) -> bool:
        return modseq_of(msg) >= self.since


_fetch_parse = FetchAttribute.parse.__func__  # type: ignore[attr-defined]
_search_parse = SearchKey.parse.__func__  # type: ignore[attr-defined]
_criteria_of = pymap_search.SearchCriteria.of.__func__  # type: ignore[attr-defined]


def _parse_fetch_attribute(
    cls: type[FetchAttribute], buf: memoryview, params: Params
) -> tuple[FetchAttribute, memoryview]:
    m = _FETCH_MODSEQ.match(buf)
    if m is not None:
        return MODSEQ, buf[m.end() :]
    return cast(tuple[FetchAttribute, memoryview], _fetch_parse(cls, buf, params))


def _parse_search_key(
    cls: type[SearchKey], buf: memoryview, params: Params
) -> tuple[SearchKey, memoryview]:
    m = _SEARCH_MODSEQ.match(buf)
    if m is not None:
        value = int(m.group(2))
        if value > MAX_MODSEQ:
            raise NotParseable(buf)
        return cls(b"MODSEQ", value, m.group(1) is not None), buf[m.end() :]
    return cast(tuple[SearchKey, memoryview], _search_parse(cls, buf, params))


def _criteria(
    cls: type[pymap_search.SearchCriteria], key: SearchKey, params: pymap_search.SearchParams
) -> pymap_search.SearchCriteria:
    if key.value == b"MODSEQ" and not key.inverse:
        return ModSeqCriteria(cast(int, key.filter), params)
    return cast(pymap_search.SearchCriteria, _criteria_of(cls, key, params))


def install() -> None:
    patch: Any = classmethod  # the parsers are classmethods; replaced by ours, also classmethods
    FetchAttribute.parse = patch(_parse_fetch_attribute)  # type: ignore[method-assign]
    SearchKey.parse = patch(_parse_search_key)  # type: ignore[method-assign]
    pymap_search.SearchCriteria.of = patch(_criteria)  # type: ignore[method-assign]
    StatusAttribute.valid_statuses = {*StatusAttribute.valid_statuses, b"HIGHESTMODSEQ"}
    attrs = dict(MessageAttributes._simple_attrs)
    attrs[b"MODSEQ"] = ModSeqValue
    MessageAttributes._simple_attrs = attrs


def number_option(options: ExtensionOptions, name: bytes) -> int | None:
    """The one number of a modifier such as ``(CHANGEDSINCE 5)``; ``NotParseable`` if it has
    none or something else."""
    arg = options.get(name)
    if arg is None:
        return None
    values = list(arg.value)
    if len(values) != 1 or not isinstance(values[0], Number) or values[0].value > MAX_MODSEQ:
        raise NotParseable(memoryview(name))
    return int(values[0].value)


def has_modseq(attributes: Any) -> bool:
    return any(a.value == b"MODSEQ" for a in attributes)


def _seqs(numbers: list[int]) -> bytes:
    return bytes(SequenceSet.build(numbers)) if numbers else b""


class ModSeqSelected(SelectedMailbox):
    """The selected folder; once CONDSTORE is on, the FETCH responses that tell of changes
    (another session's STORE, seen at the next command) carry MODSEQ (RFC 7162 3.1.4)."""

    __slots__ = ["condstore"]

    def __init__(self, *args: Any, condstore: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.condstore = condstore

    def fork(self, command: Command) -> tuple[SelectedMailbox, Iterable[UntaggedResponse]]:
        copy, untagged = super().fork(command)
        if isinstance(copy, ModSeqSelected):
            copy.condstore = self.condstore
        if not self.condstore:
            return copy, untagged
        return copy, [self._with_modseq(resp) for resp in untagged]

    def _with_modseq(self, resp: UntaggedResponse) -> UntaggedResponse:
        if not isinstance(resp, FetchResponse):
            return resp
        found = self.messages.get_uids(SequenceSet.build([resp.seq]))
        cached = self.messages.get(found[0][1]) if found else None
        if cached is None:
            return resp
        modseq = FetchValue.of(MODSEQ, List([Number(modseq_of(cached))]))
        return FetchResponse(resp.seq, [*resp.data.values(), modseq])


class CondstoreState(ConnectionState):
    _condstore = False

    @property
    def condstore(self) -> bool:
        return self._condstore

    @condstore.setter
    def condstore(self, on: bool) -> None:
        self._condstore = on
        if isinstance(self._selected, ModSeqSelected):
            self._selected.condstore = on

    @property
    def _ours(self) -> Session:
        return cast("Session", self.session)

    async def do_select(self, cmd: SelectCommand) -> Ret:
        if cmd.options.has(CONDSTORE):
            self.condstore = True
        resp, updates = await super().do_select(cmd)
        if isinstance(updates, ModSeqSelected):
            updates.condstore = self.condstore
        if self.condstore and updates is not None and isinstance(resp, ResponseOk):
            highest = await self._ours.highest_modseq(updates)
            resp.add_untagged_ok(b"Highest", ResponseCode.of(b"HIGHESTMODSEQ %d" % highest))
        return resp, updates

    async def do_status(self, cmd: StatusCommand) -> Ret:
        """pymap's STATUS, and ``HIGHESTMODSEQ`` (RFC 7162 3.1.6) last, where Dovecot puts it."""
        if not any(a.value == b"HIGHESTMODSEQ" for a in cmd.status_list):
            return await super().do_status(cmd)
        self.condstore = True
        resp, updates = await super().do_status(cmd)  # the rest, and the folder opened
        highest = await self._ours.folder_highest_modseq(cmd.mailbox)
        data = _status_data(resp)
        data[StatusAttribute(b"HIGHESTMODSEQ")] = Number(highest)
        answer = ResponseOk(cmd.tag, cmd.command + b" completed.")
        answer.add_untagged(StatusResponse(cmd.mailbox, data))
        return answer, updates

    async def do_fetch(self, cmd: FetchCommand) -> Ret:
        try:
            since = number_option(cmd.options, b"CHANGEDSINCE")
        except NotParseable:
            return ResponseBad(cmd.tag, b"CHANGEDSINCE needs a mod-sequence."), None
        asked = has_modseq(cmd.attributes)
        if since is None and not asked:
            return await super().do_fetch(cmd)
        self.condstore = True
        attributes = list(cmd.attributes) if asked else [*cmd.attributes, MODSEQ]
        if not cmd.uid:
            self.selected.hide_expunged = True
        set_seen = not self.selected.readonly and any(a.set_seen for a in attributes)
        messages, updates = await self.session.fetch_messages(
            self.selected, cmd.sequence_set, set_seen
        )
        resp = ResponseOk(cmd.tag, cmd.command + b" completed.")
        for msg_seq, msg in messages:
            if since is not None and modseq_of(msg) <= since:
                continue
            if msg.expunged:
                resp.code = ResponseCode.of(b"EXPUNGEISSUED")
            msg_attrs = MessageAttributes(msg, self.selected, attributes)
            resp.add_untagged(FetchResponse(msg_seq, msg_attrs, writing_hook=msg_attrs.load_hook()))
        return resp, updates

    async def do_store(self, cmd: StoreCommand) -> Ret:
        try:
            since = number_option(cmd.options, b"UNCHANGEDSINCE")
        except NotParseable:
            return ResponseBad(cmd.tag, b"UNCHANGEDSINCE needs a mod-sequence."), None
        if since is None and not self.condstore:
            return await super().do_store(cmd)
        self.condstore = True
        if not cmd.uid:
            self.selected.hide_expunged = True
        session = self._ours
        modified: list[tuple[int, int]] = []  # (seq, uid) left alone
        sequence_set = cmd.sequence_set
        if since is not None:
            current = await session.modseqs(self.selected)
            found = self.selected.messages.get_all(cmd.sequence_set)
            modified = [(s, m.uid) for s, m in found if current.get(m.uid, 0) > since]
            kept = [m.uid for _, m in found if current.get(m.uid, 0) <= since]
            sequence_set = SequenceSet.build(kept, uid=True) if kept else SequenceSet([], True)
        if cmd.silent:
            self.selected.silence(sequence_set, cmd.flag_set, cmd.mode)
        messages, updates = await session.update_flags(
            self.selected, sequence_set, cmd.flag_set, cmd.mode, unchanged_since=since
        )
        code = None
        if modified:
            numbers = [uid if cmd.uid else seq for seq, uid in modified]
            code = ResponseCode.of(b"MODIFIED " + _seqs(numbers))
        resp = ResponseOk(cmd.tag, cmd.command + b" completed.", code)
        session_flags = self.selected.session_flags
        for msg_seq, msg in messages:
            if msg.expunged:
                resp.code = ResponseCode.of(b"EXPUNGEISSUED")
                continue
            data: list[FetchValue] = []
            if not cmd.silent:
                flags = msg.get_flags(session_flags)
                data.append(FetchValue.of(FetchAttribute(b"FLAGS"), List(flags, sort=True)))
            if cmd.uid:
                data.append(FetchValue.of(FetchAttribute(b"UID"), Number(msg.uid)))
            data.append(FetchValue.of(MODSEQ, List([Number(modseq_of(msg))])))
            resp.add_untagged(FetchResponse(msg_seq, data))
        return resp, updates

    async def do_search(self, cmd: SearchCommand) -> Ret:
        if not any(_uses_modseq(k) for k in cmd.keys):
            return await super().do_search(cmd)
        self.condstore = True
        if not cmd.uid:
            self.selected.hide_expunged = True
        messages, updates = await self.session.search_mailbox(self.selected, cmd.keys)
        resp = ResponseOk(cmd.tag, cmd.command + b" completed.")
        ids, highest, expunged = found(messages, uid=cmd.uid)
        if expunged:
            resp.code = ResponseCode.of(b"EXPUNGEISSUED")
        resp.add_untagged(ModSeqSearchResponse(ids, highest if ids else None))
        return resp, updates


def _status_data(resp: CommandResponse) -> dict[StatusAttribute, MaybeBytes]:
    """The data of the STATUS response pymap built (the one untagged response it adds)."""
    for untagged in resp._untagged:
        if isinstance(untagged, StatusResponse):
            return dict(untagged.data)
    return {}


def _uses_modseq(key: SearchKey) -> bool:
    if key.value == b"MODSEQ":
        return True
    if key.value == b"KEYSET":
        return any(_uses_modseq(k) for k in key.filter_key_set)
    if key.value == b"OR":
        return any(_uses_modseq(k) for k in key.filter_key_or)
    return False


class ModSeqSearchResponse(SearchResponse):
    """``* SEARCH 2 5 (MODSEQ 917)`` (RFC 7162 3.1.5); no ``MODSEQ`` when nothing matched."""

    def __init__(self, seqs: list[int], highest: int | None) -> None:
        super().__init__(seqs)
        self._highest = highest

    @property
    def text(self) -> bytes:
        base = super().text
        if self._highest is None:
            return base
        return base + b" (MODSEQ %d)" % self._highest


install()
