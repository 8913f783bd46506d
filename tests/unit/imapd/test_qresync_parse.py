"""QRESYNC's parameters read as UID ranges, never expanded; anything else BAD (#13, RFC 7162)."""

from __future__ import annotations

import pytest
from pymap.parsing import Params
from pymap.parsing.command.auth import SelectCommand
from pymap.parsing.commands import Commands
from pymap.parsing.primitives import List

from qmesh.mailbox import index as idx
from qmesh.mailbox.index import Listed
from services.imapd.qresync import (
    BadParameter,
    contains,
    format_ranges,
    parse_resync,
    uid_ranges,
    vanished_since,
)
from services.imapd.rev2 import esearch


def qresync_arg(line: bytes) -> List:
    """The QRESYNC option as pymap parses it; pymap's own refusal (BAD) as BadParameter."""
    cmd, _ = Commands().parse(memoryview(b"t SELECT INBOX (QRESYNC " + line + b")\r\n"), Params())
    arg = cmd.options.get(b"QRESYNC") if isinstance(cmd, SelectCommand) else None
    if arg is None:
        raise BadParameter(line)
    return arg


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"1", [(1, 1)]),
        (b"5:3,1,2", [(1, 5)]),
        (b"1:4294967295", [(1, 4294967295)]),
        (b"7,9:10", [(7, 7), (9, 10)]),
    ],
)
def test_uid_ranges(raw: bytes, want: list[tuple[int, int]]) -> None:
    assert uid_ranges(raw) == want
    assert uid_ranges(format_ranges(want)) == want


@pytest.mark.parametrize(
    "raw", [b"", b"*", b"1:*", b"0", b"0:3", b"4294967296", b"1,,2", b"1:", b"a", b"1 2", b"9" * 11]
)
def test_bad_uid_sets(raw: bytes) -> None:
    with pytest.raises(BadParameter):
        uid_ranges(raw)


def test_parse_resync_reads_every_part() -> None:
    got = parse_resync(qresync_arg(b"(67890007 90060115194045000 41,43:211 (1:3 41,43:44))"))
    assert (got.uidvalidity, got.modseq, got.known) == (
        67890007,
        90060115194045000,
        [(41, 41), (43, 211)],
    )
    assert parse_resync(qresync_arg(b"(1 2)")).known is None


@pytest.mark.parametrize(
    "line",
    [
        b"(1)",
        b"(0 1)",
        b"(1 0)",
        b"(4294967296 1)",
        b"(1 9223372036854775808)",
        b"(1 1 1:*)",
        b"(1 1 1:5 (1:2))",
        b"(1 1 1:5 (1 x))",
        b"(1 1 1:5 (1 2) 7)",
        b"((1) 1)",
    ],
)
def test_bad_resync(line: bytes) -> None:
    with pytest.raises(BadParameter):
        parse_resync(qresync_arg(line))


def test_vanished_since_falls_back_to_every_absent_uid() -> None:
    listing = [Listed(f"m{i}", f"new/m{i}", 1, i) for i in range(6)]
    base = idx.reconcile(idx.new_index(1), listing)
    gone = idx.remove(base, ["m1", "m4"])
    assert vanished_since(gone, base.highest_modseq, None) == [(2, 2), (5, 5)]
    assert vanished_since(gone, base.highest_modseq, [(3, 9)]) == [(5, 5)]
    old = idx.decode(idx.encode(gone))  # the record survives storage
    assert vanished_since(old, base.highest_modseq, None) == [(2, 2), (5, 5)]
    unknown = idx.FolderIndex(
        uidvalidity=1, next_uid=8, highest_modseq=9, messages=gone.messages, gone_floor=9
    )
    assert vanished_since(unknown, 3, None) == [(2, 2), (5, 5), (7, 7)]
    assert contains([(1, 3), (7, 9)], 8) and not contains([(1, 3), (7, 9)], 5)


def test_esearch_format() -> None:
    all_ = frozenset({b"ALL"})
    assert bytes(esearch(b"a1", True, [1, 2, 3, 7], all_, None)) == (
        b'* ESEARCH (TAG "a1") UID ALL 1:3,7\r\n'
    )
    assert bytes(esearch(b"a2", False, [], frozenset({b"MIN", b"COUNT", b"ALL"}), None)) == (
        b'* ESEARCH (TAG "a2") COUNT 0\r\n'
    )
    got = esearch(b"a3", False, [4, 2], frozenset({b"MIN", b"MAX"}), 17)
    assert bytes(got) == b'* ESEARCH (TAG "a3") MIN 2 MAX 4 MODSEQ 17\r\n'
