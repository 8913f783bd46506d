# ruff: noqa: F811 - the fixtures imported from test_imapd are the parameters
"""Keywords kept in the mailbox model: seen by every replica, bounded per folder (#13).

The comparison with Dovecot is ``test_keywords_as_dovecot`` in test_imapd_dovecot.py."""

from __future__ import annotations

import pytest

from services.imapd.keywords import MAX_KEYWORDS
from tests.integration.test_imapd import (  # noqa: F401 - fixtures
    MESSAGE,
    Stack,
    certificate,
    settings,
    two,
)
from tests.integration.test_imapd_qresync import command, session

pytestmark = pytest.mark.integration


async def test_keywords_are_kept_for_every_replica_and_bounded(two: Stack) -> None:
    await two.add_account("kim")
    for i in range(2):
        await two.deliver("kim", MESSAGE, i)
    one = await session(two, "kim", 0)
    other = await session(two, "kim", 1)
    try:
        got = await command(one, b"s", b"SELECT INBOX")
        assert any(line.startswith(b"* OK [PERMANENTFLAGS (\\* ") for line in got), got
        got = await command(one, b"k", b"STORE 1 +FLAGS ($Forwarded $Junk Work)")
        assert b"* 1 FETCH (FLAGS (\\Recent $Forwarded $Junk Work))\r\n" in got, got
        got = await command(other, b"s", b"EXAMINE INBOX")
        flags = next(line for line in got if line.startswith(b"* FLAGS"))
        assert all(k in flags for k in (b"$Forwarded", b"$Junk", b"Work")), flags
        assert b"\\*" not in flags and b"\\Recent" not in flags
        got = await command(other, b"f", b"UID FETCH 1 (FLAGS)")
        assert b"$Junk" in got[0] and b"Work" in got[0], got
        got = await command(other, b"q", b"UID SEARCH KEYWORD Work")
        assert got[0] == b"* SEARCH 1\r\n"

        # a folder holds at most MAX_KEYWORDS distinct keywords; more is NO [LIMIT], nothing kept
        many = b" ".join(b"k%d" % i for i in range(MAX_KEYWORDS))
        got = await command(one, b"m", b"STORE 2 +FLAGS (" + many + b")")
        assert got[-1].startswith(b"m NO [LIMIT]"), got[-1]
        got = await command(one, b"f2", b"FETCH 2 (FLAGS)")
        assert b"k1" not in got[0], got
        got = await command(one, b"m2", b"STORE 2 -FLAGS (" + many + b")")  # removing is fine
        assert got[-1].startswith(b"m2 OK")
        got = await command(one, b"b", b"STORE 2 +FLAGS (\\Bogus)")
        assert got[-1].startswith(b"b BAD")
        assert (await command(one, b"n", b"NOOP"))[-1].startswith(b"n OK")
    finally:
        one.close()
        other.close()
