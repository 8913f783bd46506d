"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: what a rev2 client needs, over pymap (#13).

Advertised as ``IMAP4rev2`` next to ``IMAP4rev1``; a client turns it on with
``ENABLE IMAP4rev2`` (RFC 9051 6.3.1). Then:

- ``SEARCH`` answers ``* ESEARCH (TAG "t") [UID] ALL set`` instead of ``* SEARCH`` (6.4.4),
  ``* n RECENT`` is never sent and the session claims no ``\\Recent`` messages, so no FETCH
  shows the flag (``\\Recent`` is gone from rev2; SELECT's FLAGS already leaves it out).
- Mailbox names are UTF-8 in both directions, not modified UTF-7 (6.3.1;
  :mod:`services.imapd.mutf7`).
- Whatever the version: ``SEARCH RETURN (MIN MAX COUNT ALL SAVE)`` (ESEARCH, RFC 4731, and
  SEARCHRES, RFC 5182: ``$``, :mod:`services.imapd.searchres`), ``STATUS`` ``SIZE`` (RFC 8438)
  and ``DELETED`` (9051 6.3.11),
  ``UNSELECT`` (RFC 3691), LIST's ``RETURN (SUBSCRIBED)`` with ``\\Subscribed`` and
  ``RETURN (STATUS (...))`` (LIST-STATUS, RFC 5819) (:mod:`services.imapd.extensions`).

What RFC 9051 asks and this does not do is listed in the service's README (BUGS).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from pymap.exceptions import ResponseError
from pymap.parsing import Params
from pymap.parsing.command import Command, CommandNoArgs, CommandSelect
from pymap.parsing.command.auth import SelectCommand, StatusCommand
from pymap.parsing.command.select import SearchCommand, UidSearchCommand
from pymap.parsing.primitives import Number
from pymap.parsing.response import (
    CommandResponse,
    ResponseBad,
    ResponseCode,
    ResponseOk,
    UntaggedResponse,
)
from pymap.parsing.response.specials import RecentResponse, StatusResponse
from pymap.parsing.specials import StatusAttribute

from qmesh.mailbox import vanished
from services.imapd import mutf7, searchres
from services.imapd.condstore import _status_data, _uses_modseq, found
from services.imapd.qresync import QresyncSelected, QresyncState, Ret, format_ranges

IMAP4REV2 = b"IMAP4rev2"
RETURNS = frozenset({b"MIN", b"MAX", b"COUNT", b"ALL", searchres.SAVE})
EXTRA_STATUS = (b"SIZE", b"DELETED")


class UnselectCommand(CommandNoArgs, CommandSelect):
    """``UNSELECT``: leave the folder without expunging (RFC 3691, part of RFC 9051)."""

    command = b"UNSELECT"


def ranges_of(numbers: Iterable[int]) -> bytes:
    return format_ranges(vanished.merge((n, n) for n in numbers))


def esearch(
    tag: bytes, uid: bool, ids: list[int], returns: frozenset[bytes], highest: int | None
) -> UntaggedResponse:
    """``* ESEARCH (TAG "t") UID MIN 1 MAX 9 COUNT 3 ALL 1,5,9`` (RFC 4731 3.1, 9051 7.3.4)."""
    parts = [b'ESEARCH (TAG "%b")' % tag.replace(b"\\", b"\\\\").replace(b'"', b'\\"')]
    if uid:
        parts.append(b"UID")
    if ids and b"MIN" in returns:
        parts.append(b"MIN %d" % min(ids))
    if ids and b"MAX" in returns:
        parts.append(b"MAX %d" % max(ids))
    if b"COUNT" in returns:
        parts.append(b"COUNT %d" % len(ids))
    if ids and b"ALL" in returns:
        parts.append(b"ALL " + ranges_of(ids))
    if ids and highest is not None:
        parts.append(b"MODSEQ %d" % highest)
    return UntaggedResponse(b" ".join(parts))


class Rev2State(QresyncState):
    _rev2 = False
    _saved: frozenset[int] = frozenset()  # UIDs of SEARCH RETURN (SAVE), ``$``

    @property
    def rev2(self) -> bool:
        return self._rev2

    @rev2.setter
    def rev2(self, on: bool) -> None:
        self._rev2 = on
        mutf7.UTF8_NAMES.set(on)  # this connection's task parses and writes names in UTF-8
        self._ours.no_recent = on  # no \Recent for this session to claim or show
        if isinstance(self._selected, QresyncSelected):
            self._selected.no_recent = on

    async def do_select(self, cmd: SelectCommand) -> Ret:
        closed = self.rev2 and not self.qresync and self._selected is not None
        resp, updates = await super().do_select(cmd)
        if isinstance(resp, ResponseOk):
            self._saved = frozenset()  # RFC 5182 2.1: a new folder, nothing saved
        if not self.rev2:
            return resp, updates
        if isinstance(updates, QresyncSelected):
            updates.no_recent = True
        resp._untagged = [r for r in resp._untagged if not isinstance(r, RecentResponse)]
        if closed:  # RFC 9051 7.1: [CLOSED] when another folder was selected
            resp._untagged.insert(0, UntaggedResponse(b"OK [CLOSED] Previous mailbox closed."))
        return resp, updates

    async def do_command(self, cmd: Command) -> CommandResponse:
        searchres.bind(cmd, self._saved)  # ``$`` is what was saved when the command runs
        return await super().do_command(cmd)

    async def do_unselect(self, cmd: UnselectCommand) -> Ret:
        self._selected = None
        return ResponseOk(cmd.tag, b"UNSELECT completed."), None

    async def do_status(self, cmd: StatusCommand) -> Ret:
        extra = [a for a in cmd.status_list if a.value in EXTRA_STATUS]
        resp, updates = await super().do_status(cmd)
        if not extra or not isinstance(resp, ResponseOk):
            return resp, updates
        size, deleted = await self._ours.folder_size(cmd.mailbox)
        data = _status_data(resp)
        for attr in extra:
            data[StatusAttribute(attr.value)] = Number(size if attr.value == b"SIZE" else deleted)
        answer = ResponseOk(cmd.tag, cmd.command + b" completed.")
        answer.add_untagged(StatusResponse(cmd.mailbox, data))
        return answer, updates

    async def do_search(self, cmd: SearchCommand) -> Ret:
        asked = frozenset(cmd.options.value)
        if not asked and not self.rev2 and not _returned(cmd):
            return await super().do_search(cmd)
        if not asked <= RETURNS:
            return ResponseBad(cmd.tag, b"Unsupported SEARCH RETURN option."), None
        save = searchres.SAVE in asked
        returns = asked - {searchres.SAVE} if asked else frozenset({b"ALL"})
        with_modseq = any(_uses_modseq(k) for k in cmd.keys)
        if with_modseq:
            self.condstore = True
        if not cmd.uid:
            self.selected.hide_expunged = True
        try:
            messages, updates = await self.session.search_mailbox(self.selected, cmd.keys)
        except ResponseError:
            if save:  # RFC 5182 2.1: a SEARCH ... SAVE answered NO saves nothing
                self._saved = frozenset()
            raise
        messages = list(messages)
        resp = ResponseOk(cmd.tag, cmd.command + b" completed.")
        ids, highest, expunged = found(messages, uid=cmd.uid)
        if expunged:
            resp.code = ResponseCode.of(b"EXPUNGEISSUED")
        if save:
            self._saved = searchres.to_save([m.uid for _, m in messages], returns)
        if returns:  # SAVE alone answers nothing but OK (RFC 5182 2.1)
            modseq = highest if with_modseq else None
            resp.add_untagged(esearch(cmd.tag, cmd.uid, ids, returns, modseq))
        return resp, updates


def _returned(cmd: SearchCommand) -> bool:
    """``SEARCH RETURN () ...``: an empty option list, which means ``ALL`` (RFC 4731 3.1)."""
    return bool(getattr(cmd, "returned", False))


def _has_return(buf: memoryview) -> bool:
    return bytes(buf[:8]).lstrip().upper().startswith(b"RETURN")


class ReturnSearchCommand(SearchCommand):
    """SEARCH that remembers whether it had a ``RETURN (...)`` at all."""

    returned = False

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[SearchCommand, memoryview]:
        cmd, rest = super().parse(buf, params)
        cast(ReturnSearchCommand, cmd).returned = _has_return(buf)
        return cmd, rest


class ReturnUidSearchCommand(UidSearchCommand):
    """UID SEARCH that remembers whether it had a ``RETURN (...)`` at all."""

    returned = False

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[UidSearchCommand, memoryview]:
        cmd, rest = super().parse(buf, params)
        cast(ReturnUidSearchCommand, cmd).returned = _has_return(buf)
        return cmd, rest


COMMANDS = (UnselectCommand, ReturnSearchCommand, ReturnUidSearchCommand)

StatusAttribute.valid_statuses = {*StatusAttribute.valid_statuses, *EXTRA_STATUS}
