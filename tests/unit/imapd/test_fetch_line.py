"""The direct FETCH line is byte for byte what pymap writes (#13 performance)."""

from __future__ import annotations

from pymap.fetch import MessageAttributes
from pymap.flags import PermanentFlags, SessionFlags
from pymap.parsing import Params
from pymap.parsing.command.select import FetchCommand
from pymap.parsing.commands import Commands
from pymap.parsing.response.specials import FetchResponse
from pymap.parsing.specials import ObjectId
from pymap.parsing.specials.flag import Recent, get_system_flags
from pymap.selected import SelectedMailbox

from qmesh.mailbox.index import Entry
from services.imapd.backend import Message
from services.imapd.speedups import fetch_line


def responses(items: bytes, flags: frozenset[str], recent: bool) -> FetchResponse:
    cmd, _ = Commands().parse(memoryview(b"a UID FETCH 1:* " + items + b"\r\n"), Params())
    assert isinstance(cmd, FetchCommand)
    selected = SelectedMailbox(
        ObjectId.random_mailbox_id(),
        False,
        PermanentFlags(get_system_flags() - {Recent}),
        SessionFlags(frozenset({Recent})),
    )
    if recent:
        selected.session_flags.add_recent(7)
    msg = Message(Entry(7, 3, flags, 120, 1_764_583_200, "new/x"), None)
    attrs = MessageAttributes(msg, selected, cmd.attributes)
    return FetchResponse(5, attrs, writing_hook=attrs.load_hook())


def test_the_fetch_line_is_what_pymap_writes() -> None:
    for items in (b"(FLAGS)", b"(UID FLAGS)", b"(FLAGS INTERNALDATE UID)", b"FLAGS"):
        for flags in (
            frozenset(),
            frozenset({"\\Seen"}),
            frozenset({"\\Seen", "$Junk", "\\Draft"}),
        ):
            for recent in (False, True):
                resp = responses(items, flags, recent)
                assert fetch_line(resp) == bytes(resp), (items, flags, recent)


def test_content_items_are_left_to_pymap() -> None:
    for items in (b"(FLAGS BODY.PEEK[])", b"(ENVELOPE)", b"(RFC822.SIZE UID)"):
        assert fetch_line(responses(items, frozenset(), False)) is None
