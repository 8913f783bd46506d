"""A FETCH of only UID, FLAGS and INTERNALDATE, answered without pymap's per-message objects
(#13).

pymap's ``do_fetch`` builds, for every message, a ``MessageAttributes``, one value object per
item and a ``FetchResponse`` (with a content-loading hook), and merges each into the command
response: for ``UID FETCH 1:* (FLAGS)`` of 10,000 messages that was most of the command's time.
None of those items needs the message's content, so here one untagged response holds the
messages and writes their lines itself, the same bytes pymap writes.

pymap merges an untagged FETCH of the command's own updates (flags another session changed)
into the FETCH of the same message; if such an update names one of these messages, the
response becomes pymap's own responses first and merges as before.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from pymap.bytes import WriteStream
from pymap.fetch import MessageAttributes
from pymap.imap.state import ConnectionState
from pymap.interfaces.message import MessageInterface
from pymap.parsing.command.select import FetchCommand
from pymap.parsing.primitives import List
from pymap.parsing.response import ResponseCode, ResponseOk, UntaggedResponse
from pymap.parsing.response.specials import FetchResponse
from pymap.parsing.specials import DateTime, FetchAttribute
from pymap.selected import SelectedMailbox

QUICK = frozenset({b"UID", b"FLAGS", b"INTERNALDATE"})  # pymap's items that need no content
Ret = tuple[ResponseOk, SelectedMailbox | None]
DoFetch = Callable[[ConnectionState, FetchCommand], Coroutine[Any, Any, Any]]


def quick(attributes: Sequence[FetchAttribute]) -> bool:
    """Whether every item asked for is one this module writes."""
    return bool(attributes) and all(
        type(a) is FetchAttribute and a.value in QUICK and a.section is None for a in attributes
    )


_FLAG_LISTS: dict[frozenset[Any], bytes] = {}
_DATES: dict[object, bytes] = {}


def flag_list(flags: frozenset[Any]) -> bytes:
    """A FLAGS list as pymap writes it; the few distinct sets of a folder are made once."""
    found = _FLAG_LISTS.get(flags)
    if found is None:
        found = bytes(List(flags, sort=True))
        if len(_FLAG_LISTS) < 4096:
            _FLAG_LISTS[flags] = found
    return found


def _date(when: Any) -> bytes:
    found = _DATES.get(when)
    if found is None:
        found = bytes(DateTime(when))
        if len(_DATES) > 100_000:
            _DATES.clear()
        _DATES[when] = found
    return found


class QuickFetch(UntaggedResponse):
    """The untagged FETCH responses of one command, each written as pymap would write it."""

    def __init__(
        self,
        messages: Sequence[tuple[int, MessageInterface]],
        selected: SelectedMailbox,
        attributes: Sequence[FetchAttribute],
    ) -> None:
        super().__init__()
        self.messages = messages
        self.selected = selected
        self.attributes = attributes
        self.seqs = frozenset(seq for seq, _ in messages)

    def expanded(self) -> list[FetchResponse]:
        """pymap's own responses for the same messages."""
        out = []
        for seq, msg in self.messages:
            attrs = MessageAttributes(msg, self.selected, self.attributes)
            out.append(FetchResponse(seq, attrs, writing_hook=attrs.load_hook()))
        return out

    def lines(self) -> Iterable[bytes]:
        # pymap's FetchResponse keeps one value per item, where the item first appears
        # (UID FETCH adds UID after the items the client named)
        attributes = list({a.value: a for a in self.attributes}.values())
        names = [a.value for a in attributes]
        template = b"* %%d FETCH (%b)\r\n" % b" ".join(
            bytes(a.for_response) + b" %b" for a in attributes
        )
        session_flags = self.selected.session_flags
        if names == [b"FLAGS", b"UID"]:  # UID FETCH (FLAGS): a client's resynchronisation
            for seq, msg in self.messages:
                yield template % (seq, flag_list(msg.get_flags(session_flags)), b"%d" % msg.uid)
            return
        for seq, msg in self.messages:
            values = []
            for name in names:
                if name == b"UID":
                    values.append(b"%d" % msg.uid)
                elif name == b"FLAGS":
                    values.append(flag_list(msg.get_flags(session_flags)))
                else:
                    values.append(_date(msg.internal_date))
            yield template % (seq, *values)

    def write(self, writer: WriteStream) -> None:
        batch: list[bytes] = []
        for line in self.lines():
            batch.append(line)
            if len(batch) == 256:
                writer.write(b"".join(batch))
                batch.clear()
        writer.write(b"".join(batch))

    def __bytes__(self) -> bytes:
        return b"".join(self.lines())


class QuickFetchOk(ResponseOk):
    """The tagged OK of such a FETCH: an update naming one of its messages turns the quick
    response into pymap's responses before it is merged."""

    quick: QuickFetch | None = None

    def add_untagged(self, *responses: UntaggedResponse) -> None:
        held = self.quick
        if held is not None and any(
            type(r) is FetchResponse and isinstance(r, FetchResponse) and r.seq in held.seqs
            for r in responses
        ):
            self.quick = None
            before, self._untagged, self._mergeable = self._untagged, [], {}
            for resp in before:
                if resp is held:
                    super().add_untagged(*held.expanded())
                else:
                    super().add_untagged(resp)
        super().add_untagged(*responses)


def install() -> None:
    """pymap's ``do_fetch`` with this path for a FETCH of only :data:`QUICK` items."""
    if getattr(ConnectionState.do_fetch, "quick", False):
        return  # once
    before: DoFetch = ConnectionState.do_fetch

    async def do_fetch(self: ConnectionState, cmd: FetchCommand) -> Any:
        if not quick(cmd.attributes):
            return await before(self, cmd)
        selected = self.selected
        if not cmd.uid:
            selected.hide_expunged = True
        messages, updates = await self.session.fetch_messages(selected, cmd.sequence_set, False)
        found = list(messages)
        resp = QuickFetchOk(cmd.tag, cmd.command + b" completed.")
        if any(msg.expunged for _, msg in found):
            resp.code = ResponseCode.of(b"EXPUNGEISSUED")
        if found:
            resp.quick = QuickFetch(found, selected, cmd.attributes)
            resp.add_untagged(resp.quick)
        return resp, updates

    do_fetch.quick = True  # type: ignore[attr-defined]
    ConnectionState.do_fetch = do_fetch  # type: ignore[method-assign]
