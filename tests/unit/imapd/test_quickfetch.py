"""A FETCH of UID, FLAGS and INTERNALDATE written without pymap's per-message objects (#13):
the same bytes as pymap's responses, and pymap's merging of the command's own updates."""

from __future__ import annotations

from pymap.fetch import MessageAttributes
from pymap.flags import PermanentFlags, SessionFlags
from pymap.parsing import Params
from pymap.parsing.command.select import FetchCommand
from pymap.parsing.commands import Commands
from pymap.parsing.primitives import List
from pymap.parsing.response.specials import ExistsResponse, FetchResponse
from pymap.parsing.specials import FetchAttribute, FetchValue, ObjectId
from pymap.parsing.specials.flag import Recent, Seen, get_system_flags
from pymap.selected import SelectedMailbox

from qmesh.mailbox.index import Entry
from services.imapd.backend import Message
from services.imapd.quickfetch import QuickFetch, QuickFetchOk, quick

FLAG_SETS = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "$Junk", "\\Draft"})]


def command(items: bytes) -> FetchCommand:
    cmd, _ = Commands().parse(memoryview(b"a UID FETCH 1:* " + items + b"\r\n"), Params())
    assert isinstance(cmd, FetchCommand)
    return cmd


def folder() -> tuple[SelectedMailbox, list[tuple[int, Message]]]:
    selected = SelectedMailbox(
        ObjectId.random_mailbox_id(),
        False,
        PermanentFlags(get_system_flags() - {Recent}),
        SessionFlags(frozenset({Recent})),
    )
    selected.session_flags.add_recent(12)
    messages = [
        (seq, Message(Entry(10 + seq, 3, FLAG_SETS[seq % 3], 120, 1_764_583_200 + seq, "k"), None))
        for seq in range(1, 7)
    ]
    return selected, messages


def pymap_bytes(
    selected: SelectedMailbox, messages: list[tuple[int, Message]], attrs: list[FetchAttribute]
) -> bytes:
    out = b""
    for seq, msg in messages:
        values = MessageAttributes(msg, selected, attrs)
        out += bytes(FetchResponse(seq, values, writing_hook=values.load_hook()))
    return out


def test_the_lines_are_what_pymap_writes() -> None:
    for items in (
        b"(FLAGS)",
        b"(UID FLAGS)",
        b"(FLAGS INTERNALDATE UID)",
        b"FLAGS",
        b"INTERNALDATE",
        b"(INTERNALDATE FLAGS)",
        b"(FLAGS UID FLAGS INTERNALDATE)",
    ):
        cmd = command(items)
        assert quick(cmd.attributes), items
        selected, messages = folder()
        expected = pymap_bytes(selected, messages, list(cmd.attributes))
        assert bytes(QuickFetch(messages, selected, cmd.attributes)) == expected, items


def test_items_that_need_content_are_left_to_pymap() -> None:
    for items in (b"(FLAGS BODY.PEEK[])", b"(ENVELOPE)", b"(RFC822.SIZE UID)", b"BODY[]", b"ALL"):
        assert not quick(command(items).attributes), items


def test_an_update_of_a_fetched_message_merges_into_its_line() -> None:
    """What pymap does: ``* 4 FETCH (FLAGS (\\Seen) UID 14)`` once, not a second line."""
    cmd = command(b"(FLAGS)")
    selected, messages = folder()
    resp = QuickFetchOk(b"a", b"UID FETCH completed.")
    resp.quick = QuickFetch(messages, selected, cmd.attributes)
    resp.add_untagged(resp.quick)
    flags = FetchAttribute(b"FLAGS")
    resp.add_untagged(ExistsResponse(6), FetchResponse(4, [FetchValue.of(flags, List([Seen]))]))
    lines = bytes(resp).split(b"\r\n")
    assert lines[3] == b"* 4 FETCH (FLAGS (\\Seen) UID 14)"
    assert [line.split(b" ")[1] for line in lines[:6]] == [b"1", b"2", b"3", b"4", b"5", b"6"]
    assert lines[6:] == [b"* 6 EXISTS", b"a OK UID FETCH completed.", b""]


def test_updates_of_other_messages_follow_the_lines() -> None:
    cmd = command(b"(FLAGS)")
    selected, messages = folder()
    resp = QuickFetchOk(b"a", b"UID FETCH completed.")
    resp.quick = QuickFetch(messages[:3], selected, cmd.attributes)
    resp.add_untagged(resp.quick)
    flags = FetchAttribute(b"FLAGS")
    resp.add_untagged(FetchResponse(5, [FetchValue.of(flags, List([Seen]))]))
    expected = pymap_bytes(selected, messages[:3], list(cmd.attributes))
    assert bytes(resp) == expected + b"* 5 FETCH (FLAGS (\\Seen))\r\na OK UID FETCH completed.\r\n"
