"""QRESYNC (RFC 7162 3.2) over the folder index's record of expunged UIDs (#13).

:mod:`qmesh.mailbox.vanished` keeps, in the folder's index, the UIDs each expunge removed and
its MODSEQ (the last :data:`~qmesh.mailbox.vanished.MAX_RUNS` runs). Here:

- ``ENABLE QRESYNC`` turns on QRESYNC and CONDSTORE (``* ENABLED QRESYNC``).
- ``SELECT``/``EXAMINE name (QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]]))``: when
  the UIDVALIDITY matches, ``* VANISHED (EARLIER)`` with the known UIDs expunged after
  ``modseq`` and a ``FETCH (UID FLAGS MODSEQ)`` of each known message changed after it. When the
  record does not reach back to ``modseq``, VANISHED names every known UID the folder no
  longer has (RFC 7162 3.2.5.2 allows this; the seq-match data is then not needed and only
  checked). Switching folders says ``* OK [CLOSED]`` first (3.2.11).
- Once on, EXPUNGE ends with ``OK [HIGHESTMODSEQ n]``, expunges are told as
  ``* VANISHED uids`` instead of ``* n EXPUNGE`` (3.2.10), and every unsolicited FETCH
  carries UID and MODSEQ.
- ``UID FETCH set items (CHANGEDSINCE n VANISHED)`` adds ``* VANISHED (EARLIER)`` for the UIDs
  of ``set`` expunged after ``n`` (3.2.6).

Every parser here works on UID ranges, never on the numbers they span: ``1:4294967295`` as a
known-uids set costs two integers. A malformed parameter, QRESYNC before ``ENABLE QRESYNC``, or
VANISHED without CHANGEDSINCE or UID is a tagged ``BAD``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import Any

from pymap.parsing.command import Command
from pymap.parsing.command.auth import SelectCommand
from pymap.parsing.command.select import ExpungeCommand, FetchCommand
from pymap.parsing.primitives import List, Number
from pymap.parsing.response import (
    CommandResponse,
    ResponseBad,
    ResponseCode,
    ResponseOk,
    UntaggedResponse,
)
from pymap.parsing.response.code import PermanentFlags
from pymap.parsing.response.specials import (
    ExpungeResponse,
    FetchResponse,
    FlagsResponse,
    RecentResponse,
)
from pymap.parsing.specials import FetchAttribute, FetchValue, SequenceSet
from pymap.parsing.specials.flag import Flag, Recent, Wildcard, get_system_flags
from pymap.parsing.specials.sequenceset import MaxValue
from pymap.selected import SelectedMailbox

from qmesh.mailbox import vanished
from qmesh.mailbox.index import FolderIndex
from services.imapd.condstore import (
    MAX_MODSEQ,
    MODSEQ,
    CondstoreState,
    ModSeqSelected,
    modseq_of,
    number_option,
)

QRESYNC = b"QRESYNC"
MAX_UID = 2**32 - 1
_SET = re.compile(rb"^[0-9]{1,10}(?::[0-9]{1,10})?(?:,[0-9]{1,10}(?::[0-9]{1,10})?)*$")
_NUMBER = re.compile(rb"^[0-9]{1,20}$")

Ranges = list[tuple[int, int]]
Ret = tuple[CommandResponse, SelectedMailbox | None]


class BadParameter(ValueError):
    """A QRESYNC parameter that is not RFC 7162's grammar."""


def uid_ranges(raw: bytes) -> Ranges:
    """A ``sequence-set`` of UIDs without ``*`` as merged ranges; :class:`BadParameter` else."""
    if not _SET.match(raw):
        raise BadParameter(raw[:40])
    out: Ranges = []
    for part in raw.split(b","):
        lo, _, hi = part.partition(b":")
        a, b = int(lo), int(hi or lo)
        if not (0 < a <= MAX_UID and 0 < b <= MAX_UID):
            raise BadParameter(part)
        out.append((min(a, b), max(a, b)))
    return vanished.merge(out)


def set_ranges(seq_set: SequenceSet) -> Ranges:
    """pymap's parsed UID set as ranges (``*`` read as the largest UID there can be)."""
    out: Ranges = []
    for elem in seq_set.value:
        pair = elem if isinstance(elem, tuple) else (elem, elem)
        a, b = (MAX_UID if isinstance(x, MaxValue) else int(x) for x in pair)
        out.append((min(a, b), max(a, b)))
    return vanished.merge(out)


def format_ranges(ranges: Iterable[tuple[int, int]]) -> bytes:
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in ranges)


def contains(ranges: Ranges, uid: int) -> bool:
    i = bisect.bisect_right(ranges, (uid, MAX_UID + 1)) - 1
    return i >= 0 and ranges[i][0] <= uid <= ranges[i][1]


class Resync:
    """The parsed ``(QRESYNC (...))`` of a SELECT."""

    def __init__(self, uidvalidity: int, modseq: int, known: Ranges | None) -> None:
        self.uidvalidity = uidvalidity
        self.modseq = modseq
        self.known = known


def _word(item: object) -> bytes:
    value = getattr(item, "value", None)
    if not isinstance(value, bytes):
        raise BadParameter(b"not an atom")
    return value


def parse_resync(arg: List) -> Resync:
    items = list(arg.value)
    if not 2 <= len(items) <= 4:
        raise BadParameter(b"length")
    numbers = [_word(i) for i in items[:2]]
    if not all(_NUMBER.match(n) for n in numbers):
        raise BadParameter(b"number")
    uidvalidity, modseq = (int(n) for n in numbers)
    if not (0 < uidvalidity <= MAX_UID and 0 < modseq <= MAX_MODSEQ):
        raise BadParameter(b"range")
    known = uid_ranges(_word(items[2])) if len(items) >= 3 else None
    if len(items) == 4:  # (known-sequence-set known-uid-set): checked, not needed
        match = items[3]
        pair = list(match.value) if isinstance(match, List) else []
        if len(pair) != 2:
            raise BadParameter(b"seq-match")
        for part in pair:
            uid_ranges(_word(part))
    return Resync(uidvalidity, modseq, known)


def vanished_since(index: FolderIndex, modseq: int, within: Ranges | None) -> Ranges:
    """The UIDs (of ``within``, if given) expunged after ``modseq``; every absent one when the
    record does not reach back so far."""
    found = vanished.since(index.gone, index.gone_floor, modseq)
    if found is None:
        found = vanished.absent((e.uid for e in index.entries.values()), index.next_uid)
    return vanished.intersect(found, within) if within is not None else found


class VanishedResponse(UntaggedResponse):
    def __init__(self, ranges: Ranges, *, earlier: bool) -> None:
        head = b"VANISHED (EARLIER) " if earlier else b"VANISHED "
        super().__init__(head + format_ranges(ranges))


_UID = FetchAttribute(b"UID")


class QresyncSelected(ModSeqSelected):
    """The selected folder as a QRESYNC client sees it: VANISHED for expunges, UID and MODSEQ
    in every unsolicited FETCH. ``no_recent`` leaves out ``* n RECENT`` (IMAP4rev2). A keyword
    the client has not been told of yet brings ``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` again
    (RFC 3501 7.2.6), as Dovecot sends them."""

    __slots__ = ["keywords", "no_recent", "qresync"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.qresync = False
        self.no_recent = False
        self.keywords: frozenset[Flag] | None = None  # what FLAGS last named

    def fork(self, command: Command) -> tuple[SelectedMailbox, Iterable[UntaggedResponse]]:
        copy, untagged = super().fork(command)
        if isinstance(copy, QresyncSelected):
            copy.qresync, copy.no_recent = self.qresync, self.no_recent
            copy.keywords = self.keywords
        if not self.qresync:
            return copy, untagged
        return copy, [self._with_uid(r) for r in untagged]

    def _compare(self, before: Any, after: Any, with_uid: bool) -> Iterable[UntaggedResponse]:
        out = list(super()._compare(before, after, with_uid))
        out = self._new_keywords(before, after) + out
        if self.no_recent:
            out = [r for r in out if not isinstance(r, RecentResponse)]
        if not self.qresync:
            return out
        gone = before.uids - after.uids
        out = [r for r in out if not isinstance(r, ExpungeResponse)]
        if gone and not self._hide_expunged:
            ranges = vanished.merge((u, u) for u in gone)
            out.insert(0, VanishedResponse(ranges, earlier=False))
        return out

    def _new_keywords(self, before: Any, after: Any) -> list[UntaggedResponse]:
        if self.keywords is None:
            return []
        seen = {f for _, flags in after.flags - before.flags for f in flags}
        new = {f for f in seen if not f.value.startswith(b"\\")} - self.keywords
        if not new:
            return []
        self.keywords = self.keywords | new
        flags = get_system_flags() - {Recent}
        out: list[UntaggedResponse] = [FlagsResponse(flags | self.keywords)]
        if not self.readonly:
            code = PermanentFlags([*flags, *self.keywords, Wildcard])
            out.append(UntaggedResponse(b"OK %b Flags permitted." % bytes(code)))
        return out

    def _with_uid(self, resp: UntaggedResponse) -> UntaggedResponse:
        if not isinstance(resp, FetchResponse) or _UID in resp.data:
            return resp
        found = self.messages.get_uids(SequenceSet.build([resp.seq]))
        if not found:
            return resp
        uid = FetchValue.of(_UID, Number(found[0][1]))
        return FetchResponse(resp.seq, [uid, *resp.data.values()])


class QresyncState(CondstoreState):
    _qresync = False

    @property
    def qresync(self) -> bool:
        return self._qresync

    @qresync.setter
    def qresync(self, on: bool) -> None:
        self._qresync = on
        if on:
            self.condstore = True
        if isinstance(self._selected, QresyncSelected):
            self._selected.qresync = on

    async def do_select(self, cmd: SelectCommand) -> Ret:
        arg = cmd.options.get(QRESYNC)
        resync = None
        if arg is not None:
            if not self.qresync:
                return ResponseBad(cmd.tag, b"QRESYNC is not enabled."), None
            try:
                resync = parse_resync(arg)
            except BadParameter:
                return ResponseBad(cmd.tag, b"Invalid QRESYNC parameter."), None
        closed = self.qresync and self._selected is not None
        resp, updates = await super().do_select(cmd)
        if isinstance(updates, QresyncSelected):
            updates.qresync = self.qresync
        if closed:
            resp._untagged.insert(0, UntaggedResponse(b"OK [CLOSED] Previous mailbox closed."))
        if resync is None or updates is None or not isinstance(resp, ResponseOk):
            return resp, updates
        index = await self._ours.folder_index(updates)
        if index.uidvalidity != resync.uidvalidity:
            return resp, updates
        gone = vanished_since(index, resync.modseq, resync.known)
        if gone:
            resp.add_untagged(VanishedResponse(gone, earlier=True))
        session_flags = updates.session_flags
        for seq, msg in updates.messages.get_all(SequenceSet.all(uid=True)):
            if modseq_of(msg) <= resync.modseq:
                continue
            if resync.known is not None and not contains(resync.known, msg.uid):
                continue
            data = [
                FetchValue.of(_UID, Number(msg.uid)),
                FetchValue.of(
                    FetchAttribute(b"FLAGS"), List(msg.get_flags(session_flags), sort=True)
                ),
                FetchValue.of(MODSEQ, List([Number(modseq_of(msg))])),
            ]
            resp.add_untagged(FetchResponse(seq, data))
        return resp, updates

    async def do_expunge(self, cmd: ExpungeCommand) -> Ret:
        """EXPUNGE and UID EXPUNGE end with ``OK [HIGHESTMODSEQ n]`` (RFC 7162 3.2.10)."""
        resp, updates = await super().do_expunge(cmd)
        if self.qresync and updates is not None and isinstance(resp, ResponseOk):
            highest = (await self._ours.folder_index(updates)).highest_modseq
            resp.code = ResponseCode.of(b"HIGHESTMODSEQ %d" % highest)
        return resp, updates

    async def do_fetch(self, cmd: FetchCommand) -> Ret:
        if not cmd.options.has(b"VANISHED"):
            return await super().do_fetch(cmd)
        if not (self.qresync and cmd.uid and cmd.options.has(b"CHANGEDSINCE")):
            return ResponseBad(
                cmd.tag, b"VANISHED needs QRESYNC, UID FETCH and CHANGEDSINCE."
            ), None
        arg = cmd.options.get(b"VANISHED")
        if arg is not None and arg.value:
            return ResponseBad(cmd.tag, b"VANISHED takes no value."), None
        resp, updates = await super().do_fetch(cmd)
        if not isinstance(resp, ResponseOk):
            return resp, updates
        since = number_option(cmd.options, b"CHANGEDSINCE") or 0
        index = await self._ours.folder_index(self.selected)
        gone = vanished_since(index, since, set_ranges(cmd.sequence_set))
        if gone:
            resp._untagged.insert(0, VanishedResponse(gone, earlier=True))
        return resp, updates
