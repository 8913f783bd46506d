# ruff: noqa: F811 - the fixtures imported from test_imapd are the parameters
"""IMAP4rev2 (RFC 9051) once a client enables it: ESEARCH, no RECENT, STATUS SIZE and
DELETED, UNSELECT, [CLOSED]; hostile RETURN options are BAD (#13).

Dovecot 2.3 has no IMAP4rev2; the pieces it shares with rev1 extensions are compared in
``test_rev2_pieces_as_dovecot`` (test_imapd_dovecot.py)."""

from __future__ import annotations

import pytest

from tests.integration.test_imapd import (  # noqa: F401 - fixtures
    MESSAGE,
    Raw,
    Stack,
    certificate,
    settings,
    stack,
)
from tests.integration.test_imapd_qresync import command, session

pytestmark = pytest.mark.integration


async def test_rev2_client_sees_rev2_answers(stack: Stack) -> None:
    await stack.add_account("rita")
    for i in range(3):
        await stack.deliver("rita", MESSAGE, i)
    greeting_raw = await Raw.connect(stack.port())
    try:
        caps = b"".join(await command(greeting_raw, b"c", b"CAPABILITY"))
        assert b"* CAPABILITY IMAP4rev1 IMAP4rev2 " in caps, caps
    finally:
        greeting_raw.close()
    raw = await session(stack, "rita")
    try:
        caps = b"".join(await command(raw, b"c", b"CAPABILITY"))
        for cap in (b" IMAP4rev2", b" ESEARCH", b" UNSELECT", b" STATUS=SIZE", b" ENABLE"):
            assert cap in caps, cap
        # before ENABLE: a rev1 SEARCH answer
        await command(raw, b"s0", b"EXAMINE INBOX")
        assert (await command(raw, b"q0", b"SEARCH ALL"))[0] == b"* SEARCH 1 2 3\r\n"
        got = await command(raw, b"e", b"ENABLE IMAP4rev2")
        assert got[0] == b"* ENABLED IMAP4rev2\r\n"
        got = await command(raw, b"s", b"SELECT INBOX")
        assert got[0] == b"* OK [CLOSED] Previous mailbox closed.\r\n"
        assert not any(line.endswith(b" RECENT\r\n") for line in got), got
        assert b"Recent" not in b"".join(await command(raw, b"fl", b"FETCH 1:* (FLAGS)"))
        assert (await command(raw, b"q1", b"SEARCH ALL"))[0] == (
            b'* ESEARCH (TAG "q1") ALL 1:3\r\n'
        )
        await command(raw, b"d", b"STORE 2 +FLAGS (\\Deleted)")
        assert (await command(raw, b"q2", b"UID SEARCH DELETED"))[0] == (
            b'* ESEARCH (TAG "q2") UID ALL 2\r\n'
        )
        got = await command(raw, b"q3", b"SEARCH SUBJECT nothing-like-this")
        assert got[0] == b'* ESEARCH (TAG "q3")\r\n'
        got = await command(raw, b"q4", b"SEARCH RETURN (COUNT MIN) NOT DELETED")
        assert got[0] == b'* ESEARCH (TAG "q4") MIN 1 COUNT 2\r\n'
        size = 3 * len(MESSAGE.replace(b"\n", b"\r\n"))
        got = await command(raw, b"st", b"STATUS Trash (SIZE DELETED MESSAGES)")
        assert got[0] == b"* STATUS Trash (MESSAGES 0 SIZE 0 DELETED 0)\r\n", got
        got = await command(raw, b"st2", b"STATUS INBOX (DELETED SIZE)")
        assert got[0] == b"* STATUS INBOX (DELETED 1 SIZE %d)\r\n" % size, got
        assert (await command(raw, b"u", b"UNSELECT"))[-1] == b"u OK UNSELECT completed.\r\n"
        assert (await command(raw, b"f", b"FETCH 1 (FLAGS)"))[-1].startswith(b"f BAD")
        got = await command(raw, b"s2", b"SELECT INBOX")
        assert b"* 3 EXISTS\r\n" in got  # UNSELECT expunged nothing
    finally:
        raw.close()


HOSTILE = [
    b"SEARCH RETURN (SAVE) $,1",  # SAVE is done (SEARCHRES); $ stands alone
    b"SEARCH RETURN (BOGUS) ALL",
    b"SEARCH RETURN (MIN ALL",
    b"SEARCH RETURN MIN ALL",
    b"SEARCH RETURN (COUNT)",
    b"STATUS INBOX (SIZE BOGUS)",
    b"UNSELECT now",
    b'LIST (SUBSCRIBED BOGUS) "" "*"',
    b'LIST "" "*" RETURN (SUBSCRIBED',
    b'LIST "" "*" RETURN (STATUS ())',
    b'LIST "" "*" RETURN (STATUS (MESSAGES) STATUS (UNSEEN))',
    b'LIST "" "*" RETURN (STATUS (MESSAGES)',
    b'LIST "" "*" RETURN (STATUS (' + b"MESSAGES " * 60 + b"))",
    b'LIST "" "*" RETURN (STATUS (MESSAGES (UNSEEN)))',
]


async def test_hostile_rev2_input_is_bad(stack: Stack) -> None:
    await stack.add_account("mallory")
    await stack.deliver("mallory", MESSAGE, 1)
    for start in range(0, len(HOSTILE), 5):  # pymap hangs up after ten BAD in one session
        raw = await session(stack, "mallory")
        try:
            await command(raw, b"e", b"ENABLE IMAP4rev2")
            await command(raw, b"s", b"SELECT INBOX")
            for n, line in enumerate(HOSTILE[start : start + 5], start):
                tag = b"h%d" % n
                answer = (await command(raw, tag, line))[-1]
                assert answer.startswith(tag + b" BAD"), (line, answer)
            assert (await command(raw, b"n", b"NOOP"))[-1].startswith(b"n OK")
        finally:
            raw.close()
