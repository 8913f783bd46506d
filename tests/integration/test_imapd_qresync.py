# ruff: noqa: F811 - the fixtures imported from test_imapd are the parameters
"""QRESYNC on the wire, across replicas and against hostile parameters (#13, RFC 7162 3.2).

The comparison with Dovecot is ``test_qresync_as_dovecot`` in test_imapd_dovecot.py; here
what a client that was away learns, whichever replica or protocol made the change.
"""

from __future__ import annotations

import re
import resource

import pytest

from tests.integration.test_imapd import (  # noqa: F401 - fixtures
    MESSAGE,
    PASSWORD,
    Raw,
    Stack,
    certificate,
    settings,
    stack,
    two,
)

pytestmark = pytest.mark.integration


async def session(stack: Stack, account: str, replica: int = 0) -> Raw:
    raw = await Raw.connect(stack.port(replica))
    await raw.send(f'l LOGIN "{account}@{stack.domain}" "{PASSWORD}"\r\n'.encode())
    assert (await raw.until(b"l"))[-1].startswith(b"l OK")
    return raw


async def command(raw: Raw, tag: bytes, line: bytes) -> list[bytes]:
    await raw.send(tag + b" " + line + b"\r\n")
    return await raw.until(tag)


def number(lines: list[bytes], pattern: bytes) -> int:
    for line in lines:
        m = re.search(pattern + rb" ([0-9]+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError((pattern, lines))


async def test_client_away_learns_expunges_and_flag_changes_made_elsewhere(two: Stack) -> None:
    """A session on replica 0 remembers (UIDVALIDITY, HIGHESTMODSEQ); another on replica 1
    flags one message and expunges two; the first comes back with SELECT (QRESYNC ...)."""
    await two.add_account("quincy")
    for i in range(5):
        await two.deliver("quincy", MESSAGE, i)
    away = await session(two, "quincy", 0)
    other = await session(two, "quincy", 1)
    try:
        caps = b"".join(await command(away, b"c", b"CAPABILITY"))
        assert b" QRESYNC" in caps
        assert (await command(away, b"e", b"ENABLE QRESYNC"))[0] == b"* ENABLED QRESYNC\r\n"
        got = await command(away, b"s", b"SELECT INBOX")
        validity = number(got, rb"\[UIDVALIDITY")
        highest = number(got, rb"\[HIGHESTMODSEQ")
        await command(away, b"c2", b"CLOSE")

        await command(other, b"s", b"SELECT INBOX")
        await command(other, b"f", b"UID STORE 4 +FLAGS (\\Flagged)")
        await command(other, b"d", b"UID STORE 2,3 +FLAGS (\\Deleted)")
        assert (await command(other, b"x", b"EXPUNGE"))[-1].startswith(b"x OK")

        got = await command(away, b"q", b"SELECT INBOX (QRESYNC (%d %d 1:5))" % (validity, highest))
        assert b"* VANISHED (EARLIER) 2:3\r\n" in got, got
        fetches = [line for line in got if b" FETCH " in line]
        assert len(fetches) == 1 and fetches[0].startswith(b"* 2 FETCH (UID 4 FLAGS (\\Flagged)")
        assert got[-1].startswith(b"q OK")

        # VANISHED (EARLIER) is limited to the known UIDs; UID FETCH's VANISHED to its set
        got = await command(
            away, b"q2", b"SELECT INBOX (QRESYNC (%d %d 3:9))" % (validity, highest)
        )
        assert got[0] == b"* OK [CLOSED] Previous mailbox closed.\r\n"
        assert b"* VANISHED (EARLIER) 3\r\n" in got
        got = await command(
            away, b"v", b"UID FETCH 1:2 (FLAGS) (CHANGEDSINCE %d VANISHED)" % highest
        )
        assert got[0] == b"* VANISHED (EARLIER) 2\r\n"

        # an expunge elsewhere while selected arrives as VANISHED, never EXPUNGE
        await command(other, b"d2", b"UID STORE 5 +FLAGS (\\Deleted)")
        await command(other, b"x2", b"EXPUNGE")
        got = await command(away, b"n", b"NOOP")
        assert b"* VANISHED 5\r\n" in got and not any(b"EXPUNGE" in line for line in got), got
    finally:
        away.close()
        other.close()


async def test_pop3_style_deletion_is_vanished_too(stack: Stack) -> None:
    """An object removed behind imapd's back (pop3d's DELE) is remembered at the next look,
    and a client reconnecting later is told of it."""
    await stack.add_account("pam")
    uniques = [await stack.deliver("pam", MESSAGE, i) for i in range(3)]
    raw = await session(stack, "pam")
    await command(raw, b"e", b"ENABLE QRESYNC")
    got = await command(raw, b"s", b"EXAMINE INBOX")
    raw.close()
    validity, highest = number(got, rb"\[UIDVALIDITY"), number(got, rb"\[HIGHESTMODSEQ")
    listed = await stack.store.list(f"{stack.domain}/pam/")
    await stack.store.delete(next(i.key for i in listed if uniques[0] in i.key))
    raw = await session(stack, "pam")
    try:
        await command(raw, b"e", b"ENABLE QRESYNC")
        got = await command(raw, b"q", b"EXAMINE INBOX (QRESYNC (%d %d))" % (validity, highest))
        assert b"* VANISHED (EARLIER) 1\r\n" in got, got
        assert b"* 2 EXISTS\r\n" in got
    finally:
        raw.close()


HOSTILE = [
    b"SELECT INBOX (QRESYNC (1))",
    b"SELECT INBOX (QRESYNC (0 1))",
    b"SELECT INBOX (QRESYNC (1 0))",
    b"SELECT INBOX (QRESYNC (4294967296 1))",
    b"SELECT INBOX (QRESYNC (1 9223372036854775808))",
    b"SELECT INBOX (QRESYNC (1 1 *))",
    b"SELECT INBOX (QRESYNC (1 1 1:*))",
    b"SELECT INBOX (QRESYNC (1 1 0:5))",
    b"SELECT INBOX (QRESYNC (1 1 1,,2))",
    b"SELECT INBOX (QRESYNC (1 1 1:5 (1:2)))",
    b"SELECT INBOX (QRESYNC (1 1 1:5 (1:2 x)))",
    b"SELECT INBOX (QRESYNC (1 1 1:5 (1 2) 7))",
    b"SELECT INBOX (QRESYNC ((1) 1))",
    b"SELECT INBOX (QRESYNC (1 1 1:5)",
    b"UID FETCH 1:* (FLAGS) (VANISHED)",
    b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED 5)",
    b"FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
]


async def enabled_session(stack: Stack, account: str) -> tuple[Raw, int]:
    raw = await session(stack, account)
    await command(raw, b"e", b"ENABLE QRESYNC")
    return raw, number(await command(raw, b"s", b"SELECT INBOX"), rb"\[UIDVALIDITY")


async def test_hostile_qresync_parameters_are_bad_and_memory_stays_bounded(stack: Stack) -> None:
    await stack.add_account("mallory")
    await stack.deliver("mallory", MESSAGE, 1)
    raw = await session(stack, "mallory")
    got = await command(raw, b"b0", b"SELECT INBOX (QRESYNC (1 1))")
    assert got[-1].startswith(b"b0 BAD"), got  # not enabled yet
    raw.close()
    for start in range(0, len(HOSTILE), 5):  # pymap hangs up after ten BAD in one session
        raw, _ = await enabled_session(stack, "mallory")
        try:
            for n, line in enumerate(HOSTILE[start : start + 5], start):
                tag = b"h%d" % n
                answer = (await command(raw, tag, line))[-1]
                assert answer.startswith(tag + b" BAD"), (line, answer)
        finally:
            raw.close()
    raw, validity = await enabled_session(stack, "mallory")
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # the largest known-uids a line can carry, and ranges spanning every UID there is
        widest = b",".join(b"%d:%d" % (i * 2 + 1, 4294967295 - i) for i in range(1300))
        wider = widest + b"," + widest
        line = b"SELECT INBOX (QRESYNC (%d 1 %b (1 %b)))" % (validity, wider, wider)
        assert (await command(raw, b"w0", line))[-1] == b"w0 BAD Line too long.\r\n"
        for tag, known in ((b"w1", widest), (b"w2", b"1:4294967295")):
            got = await command(
                raw, tag, b"SELECT INBOX (QRESYNC (%d 1 %b (1 %b)))" % (validity, known, known)
            )
            assert got[-1].startswith(tag + b" OK"), got[-1]
        line = b"UID FETCH 1:4294967295 (FLAGS) (CHANGEDSINCE 1 VANISHED)"
        assert (await command(raw, b"w3", line))[-1].startswith(b"w3 OK")
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert grown_kib < 64 * 1024, grown_kib  # nothing expanded a range into its numbers
        assert (await command(raw, b"n", b"NOOP"))[-1].startswith(b"n OK")
    finally:
        raw.close()
