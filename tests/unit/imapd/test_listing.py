"""LIST-EXTENDED's answers and SEARCHRES's saved set, as tables (#13, RFC 5258, RFC 5182)."""

from __future__ import annotations

import pytest
from pymap.parsing import Params
from pymap.parsing.command.select import FetchCommand, SearchCommand
from pymap.parsing.commands import Commands, InvalidCommand

from services.imapd import searchres
from services.imapd.listing import ExtendedListCommand, Node, matcher, select

TREE = [
    Node("INBOX", True, False),
    Node("Sent", True, False),
    Node("a", False, True),
    Node("a.b", True, True),
    Node("a.b.c", True, False),
    Node("p", True, True),
    Node("p.q", True, False),
]


def answer(
    patterns: list[str], subscribed: set[str], selection: set[bytes], returns: set[bytes]
) -> list[tuple[str, tuple[bytes, ...], bool]]:
    found = select(
        TREE,
        frozenset(subscribed),
        matcher("", patterns, "."),
        frozenset(selection),
        frozenset(returns),
    )
    return [(f.name, f.attributes, f.childinfo) for f in found]


@pytest.mark.parametrize(
    ("patterns", "subscribed", "selection", "returns", "expected"),
    [
        (
            ["%"],
            set(),
            set(),
            set(),
            [
                ("INBOX", (), False),
                ("Sent", (), False),
                ("a", (b"NonExistent",), False),
                ("p", (), False),
            ],
        ),
        (
            ["a*"],
            set(),
            set(),
            {b"CHILDREN"},
            [
                ("a", (b"NonExistent", b"HasChildren"), False),
                ("a.b", (b"HasChildren",), False),
                ("a.b.c", (b"HasNoChildren",), False),
            ],
        ),
        (
            ["%"],
            {"a.b.c", "p", "p.q"},
            {b"SUBSCRIBED", b"RECURSIVEMATCH"},
            set(),
            [
                ("a", (b"NonExistent",), True),
                ("p", (b"Subscribed",), True),
            ],
        ),
        (
            ["*"],
            {"a.b.c"},
            {b"SUBSCRIBED", b"RECURSIVEMATCH"},
            set(),
            [
                ("a.b.c", (b"Subscribed",), False),
            ],
        ),
        (
            ["inbox", "S%"],
            {"Sent"},
            set(),
            {b"SUBSCRIBED", b"SPECIAL-USE"},
            [
                ("INBOX", (), False),
                ("Sent", (b"Subscribed", b"Sent"), False),
            ],
        ),
        (["*"], set(), {b"SPECIAL-USE"}, set(), [("Sent", (b"Sent",), False)]),
    ],
)
def test_extended_list_answers(
    patterns: list[str],
    subscribed: set[str],
    selection: set[bytes],
    returns: set[bytes],
    expected: list[tuple[str, tuple[bytes, ...], bool]],
) -> None:
    assert answer(patterns, subscribed, selection, returns) == expected


def parse(line: bytes) -> object:
    cmd, _ = Commands().parse(memoryview(b"t " + line + b"\r\n"), Params())
    return cmd


def test_list_command_forms() -> None:
    from services.imapd.extensions import commands

    registry = commands()
    cmd, _ = registry.parse(
        memoryview(b't LIST (SUBSCRIBED REMOTE) "" ("INBOX" %) RETURN (CHILDREN)\r\n'), Params()
    )
    assert isinstance(cmd, ExtendedListCommand)
    assert cmd.patterns == ("INBOX", "%") and cmd.extended
    assert cmd.selection == {b"SUBSCRIBED", b"REMOTE"} and cmd.returns == {b"CHILDREN"}
    for bad in (
        b'LIST (RECURSIVEMATCH) "" "%"',
        b'LIST (REMOTE RECURSIVEMATCH) "" "%"',
        b'LIST "" ()',
        b'LIST "" (' + b"x " * 64 + b"y)",
        b'LIST "" ("a" "b"',
    ):
        found, _ = registry.parse(memoryview(b"t " + bad + b"\r\n"), Params())
        assert isinstance(found, InvalidCommand), bad


def test_dollar_parses_alone_and_binds_to_uids() -> None:
    cmd = parse(b"FETCH $ (UID)")
    assert isinstance(cmd, FetchCommand) and isinstance(cmd.sequence_set, searchres.SavedSet)
    searchres.bind(cmd, frozenset({7, 3, 4}))
    assert cmd.sequence_set.uid and cmd.sequence_set.flatten(10) == {3, 4, 7}
    search = parse(b"SEARCH OR $ 1 (NOT $)")
    assert isinstance(search, SearchCommand)
    assert len(searchres.saved_sets(search)) == 2
    for bad in (b"FETCH $,1 (UID)", b"FETCH 1:$ (UID)", b"FETCH $: (UID)", b"SEARCH $x"):
        assert isinstance(parse(bad), InvalidCommand), bad


@pytest.mark.parametrize(
    ("returns", "saved"),
    [
        (set(), {2, 5, 9}),
        ({b"MIN"}, {2}),
        ({b"MAX"}, {9}),
        ({b"MIN", b"MAX"}, {2, 9}),
        ({b"MIN", b"COUNT"}, {2, 5, 9}),
        ({b"ALL", b"MAX"}, {2, 5, 9}),
    ],
)
def test_what_save_keeps(returns: set[bytes], saved: set[int]) -> None:
    assert searchres.to_save([5, 2, 9], frozenset(returns)) == saved
