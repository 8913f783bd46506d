# ruff: noqa: F811 - the fixtures imported from test_imapd are the parameters
"""What RFC 9051 took from SEARCHRES (RFC 5182) and LIST-EXTENDED (RFC 5258), and UTF-8
mailbox names after ``ENABLE IMAP4rev2`` (#13).

The comparison with Dovecot is ``test_searchres_and_list_extended_as_dovecot`` in
test_imapd_dovecot.py; here what a client relies on, and hostile input."""

from __future__ import annotations

import pytest

from tests.integration.test_imapd import (  # noqa: F401 - fixtures
    MESSAGE,
    Stack,
    certificate,
    settings,
    stack,
)
from tests.integration.test_imapd_qresync import command, session

pytestmark = pytest.mark.integration


def fetched_uids(lines: list[bytes]) -> list[bytes]:
    return [line.split(b"(UID ")[1].split(b")")[0] for line in lines if b" FETCH (UID " in line]


async def test_saved_search_result_is_used_by_later_commands(stack: Stack) -> None:
    """SEARCH RETURN (SAVE) then FETCH/STORE/COPY/MOVE/SEARCH/UID EXPUNGE with ``$``; what was
    saved is kept by UID (an expunged message drops out) and forgotten at the next SELECT."""
    await stack.add_account("sara")
    for i in range(5):
        await stack.deliver("sara", MESSAGE, i)
    raw = await session(stack, "sara")
    try:
        caps = b"".join(await command(raw, b"c", b"CAPABILITY"))
        assert b" SEARCHRES" in caps and b" LIST-EXTENDED" in caps, caps
        assert (await command(raw, b"f0", b"FETCH $ (UID)"))[-1].startswith(b"f0 BAD")
        await command(raw, b"s", b"SELECT INBOX")
        got = await command(raw, b"f1", b"FETCH $ (UID)")  # nothing saved yet: empty
        assert got == [b"f1 OK FETCH completed.\r\n"], got
        got = await command(raw, b"q1", b"SEARCH RETURN (SAVE) 2:4")
        assert got == [b"q1 OK SEARCH completed.\r\n"], got  # SAVE alone answers nothing
        assert fetched_uids(await command(raw, b"f2", b"FETCH $ (UID)")) == [b"2", b"3", b"4"]
        assert fetched_uids(await command(raw, b"f3", b"UID FETCH $ (UID)")) == [b"2", b"3", b"4"]
        got = await command(raw, b"st", b"STORE $ +FLAGS (\\Flagged)")
        assert sum(b"\\Flagged" in line for line in got) == 3, got
        assert (await command(raw, b"q2", b"SEARCH FLAGGED"))[0] == b"* SEARCH 2 3 4\r\n"
        assert (await command(raw, b"q3", b"SEARCH $ 3:5"))[0] == b"* SEARCH 3 4\r\n"
        got = await command(raw, b"q4", b"SEARCH RETURN (SAVE MIN MAX) $")
        assert got[0] == b'* ESEARCH (TAG "q4") MIN 2 MAX 4\r\n', got
        assert fetched_uids(await command(raw, b"f4", b"FETCH $ (UID)")) == [b"2", b"4"]
        got = await command(raw, b"cp", b"COPY $ Trash")
        assert got[-1].startswith(b"cp OK [COPYUID "), got
        await command(raw, b"d", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
        assert (await command(raw, b"x", b"UID EXPUNGE $"))[0] == b"* 2 EXPUNGE\r\n"
        assert fetched_uids(await command(raw, b"f5", b"FETCH $ (UID)")) == [b"4"]
        got = await command(raw, b"mv", b"MOVE $ Junk")
        assert b"* 3 EXPUNGE\r\n" in got, got
        got = await command(raw, b"q5", b"UID SEARCH RETURN (SAVE COUNT) UID 1:3")
        assert got[0] == b'* ESEARCH (TAG "q5") UID COUNT 2\r\n', got
        # a SEARCH ... SAVE answered NO saves nothing; one answered BAD changes nothing
        got = await command(raw, b"b1", b"SEARCH RETURN (SAVE) BOGUS")
        assert got[-1].startswith(b"b1 BAD"), got
        assert fetched_uids(await command(raw, b"f6", b"FETCH $ (UID)")) == [b"1", b"3"]
        await command(raw, b"s2", b"SELECT Trash")
        assert fetched_uids(await command(raw, b"f7", b"FETCH $ (UID)")) == []
        assert len(fetched_uids(await command(raw, b"f8", b"FETCH 1:* (UID)"))) == 2
    finally:
        raw.close()


HOSTILE_SEARCHRES = [
    b"FETCH $,1 (UID)",
    b"FETCH $:3 (UID)",
    b"FETCH 1,$ (UID)",
    b"SEARCH $$",
    b"STORE $x +FLAGS (\\Seen)",
    b"SEARCH RETURN (SAVE FOO) ALL",
    b"COPY $ ",
    b"UID EXPUNGE $,$",
]


async def test_hostile_dollar_is_bad_and_the_session_goes_on(stack: Stack) -> None:
    await stack.add_account("mallet")
    await stack.deliver("mallet", MESSAGE, 1)
    for start in range(0, len(HOSTILE_SEARCHRES), 5):  # pymap hangs up after ten BAD
        raw = await session(stack, "mallet")
        try:
            await command(raw, b"s", b"SELECT INBOX")
            await command(raw, b"q", b"SEARCH RETURN (SAVE) ALL")
            for n, line in enumerate(HOSTILE_SEARCHRES[start : start + 5], start):
                tag = b"h%d" % n
                answer = (await command(raw, tag, line))[-1]
                assert answer.startswith(tag + b" BAD"), (line, answer)
            assert fetched_uids(await command(raw, b"f", b"FETCH $ (UID)")) == [b"1"]
        finally:
            raw.close()


def listed(lines: list[bytes]) -> list[bytes]:
    return sorted(line.rstrip(b"\r\n") for line in lines if line.startswith(b"* LIST "))


async def test_list_extended_selection_return_options_and_patterns(stack: Stack) -> None:
    """Folders are subscribed when created, and so are the levels CREATE makes above them;
    a level deleted under a folder is \\NonExistent in an extended LIST."""
    await stack.add_account("lena")
    raw = await session(stack, "lena")
    try:
        for name in (b"a.b.c", b"x.y", b"p.q"):
            assert (await command(raw, b"c", b"CREATE " + name))[-1].startswith(b"c OK")
        for name in (b"a", b"a.b", b"x", b"x.y"):
            await command(raw, b"u", b"UNSUBSCRIBE " + name)
        assert (await command(raw, b"dx", b"DELETE x"))[-1].startswith(b"dx OK")
        got = listed(await command(raw, b"l1", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'))
        assert got == [
            b'* LIST () "." a (CHILDINFO ("SUBSCRIBED"))',
            b'* LIST (\\Subscribed) "." Drafts',
            b'* LIST (\\Subscribed) "." INBOX',
            b'* LIST (\\Subscribed) "." Junk',
            b'* LIST (\\Subscribed) "." Sent',
            b'* LIST (\\Subscribed) "." Trash',
            b'* LIST (\\Subscribed) "." p (CHILDINFO ("SUBSCRIBED"))',
        ], got
        got = listed(await command(raw, b"l1b", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"'))
        assert not [line for line in got if b"CHILDINFO" in line], got
        got = listed(await command(raw, b"l2", b'LIST (REMOTE) "" "%" RETURN (CHILDREN)'))
        assert b'* LIST (\\NonExistent \\HasChildren) "." x' in got, got
        assert b'* LIST (\\HasChildren) "." p' in got, got
        assert b'* LIST (\\HasNoChildren \\Sent) "." Sent' not in got, got
        got = listed(await command(raw, b"l3", b'LIST "" ("INBOX" "Sent" "a.%" "nothing")'))
        assert got == [b'* LIST () "." INBOX', b'* LIST () "." Sent', b'* LIST () "." a.b'], got
        got = listed(await command(raw, b"l4", b'LIST "" "p*" RETURN (SUBSCRIBED SPECIAL-USE)'))
        assert got == [b'* LIST (\\Subscribed) "." p', b'* LIST (\\Subscribed) "." p.q'], got
        got = listed(await command(raw, b"l4b", b'LIST (SPECIAL-USE) "" ("*")'))
        assert got[0] == b'* LIST (\\Drafts) "." Drafts', got
        got = await command(raw, b"l5", b'LIST () "" ("S%" "T%") RETURN (STATUS (MESSAGES))')
        assert [g for g in got if g.startswith(b"* STATUS")] == [
            b"* STATUS Sent (MESSAGES 0)\r\n",
            b"* STATUS Trash (MESSAGES 0)\r\n",
        ], got
        # a plain LIST is unchanged: \Noselect for a level that is only a parent
        got = listed(await command(raw, b"l6", b'LIST "" "x*"'))
        assert got[1] == b'* LIST (\\Noselect \\HasChildren) "." x', got
        # DELETE: a folder with children goes, they stay; a level that is no folder: HASCHILDREN
        assert (await command(raw, b"d1", b"DELETE p"))[-1].startswith(b"d1 OK")
        got = await command(raw, b"d2", b"DELETE x")
        assert got[-1].startswith(b"d2 NO [HASCHILDREN]"), got
        got = await command(raw, b"d3", b"DELETE nothing-here")
        assert got[-1].startswith(b"d3 NO [NONEXISTENT]"), got
        assert listed(await command(raw, b"l7", b'LIST "" "p*"')) == [
            b'* LIST (\\HasNoChildren) "." p.q',
            b'* LIST (\\Noselect \\HasChildren) "." p',
        ]
    finally:
        raw.close()


HOSTILE_LIST = [
    b'LIST (RECURSIVEMATCH) "" "%"',
    b'LIST (REMOTE RECURSIVEMATCH) "" "%"',
    b'LIST (SUBSCRIBED "" "%"',
    b'LIST (BOGUS) "" "%"',
    b'LIST "" ("INBOX" "Sent"',
    b'LIST "" ()',
    b'LIST "" (' + b'"x" ' * 64 + b'"y")',
    b'LIST "" "%" RETURN (BOGUS)',
    b'LIST "" "%" RETURN (CHILDREN',
    b'LIST "" ("%" RETURN (CHILDREN)',
]


async def test_hostile_list_is_bad_and_the_session_goes_on(stack: Stack) -> None:
    await stack.add_account("lars")
    for start in range(0, len(HOSTILE_LIST), 5):  # pymap hangs up after ten BAD
        raw = await session(stack, "lars")
        try:
            for n, line in enumerate(HOSTILE_LIST[start : start + 5], start):
                tag = b"h%d" % n
                answer = (await command(raw, tag, line))[-1]
                assert answer.startswith(tag + b" BAD"), (line, answer)
            got = await command(raw, b"l", b'LIST "" ("INBOX")')
            assert got == [b'* LIST () "." INBOX\r\n', b"l OK LIST completed.\r\n"], got
        finally:
            raw.close()


async def test_utf8_names_after_enable_imap4rev2(stack: Stack) -> None:
    """A rev2 client names folders in UTF-8 and sees them so; a rev1 client sees the same
    folders in modified UTF-7, as before; bad names are NO and the session goes on."""
    await stack.add_account("uwe")
    rev1 = await session(stack, "uwe")
    rev2 = await session(stack, "uwe")
    try:
        assert (await command(rev1, b"c0", b'CREATE "B&APw-cher"'))[-1].startswith(b"c0 OK")
        got = await command(rev1, b"c1", 'CREATE "Bücher2"'.encode())
        assert got[-1].startswith(b"c1 NO"), got  # raw UTF-8 is not mUTF-7 (as Dovecot)
        assert (await command(rev2, b"e", b"ENABLE IMAP4rev2"))[0] == b"* ENABLED IMAP4rev2\r\n"
        got = await command(rev2, b"c2", 'CREATE "Grüße.日本"'.encode())
        assert got[-1].startswith(b"c2 OK"), got
        got = await command(rev2, b"c3", b'CREATE "A&B"')  # an ordinary '&' in UTF-8
        assert got[-1].startswith(b"c3 OK"), got
        got = listed(await command(rev2, b"l", b'LIST "" "*"'))
        assert '* LIST (\\HasNoChildren) "." "Bücher" (OLDNAME ("B&APw-cher"))'.encode() in got
        assert '* LIST (\\HasChildren) "." "Grüße" (OLDNAME ("Gr&APwA3w-e"))'.encode() in got
        assert b'* LIST (\\HasNoChildren) "." A&B' in got, got
        got = await command(rev2, b"s", 'STATUS "Grüße.日本" (MESSAGES)'.encode())
        assert got[0] == '* STATUS "Grüße.日本" (MESSAGES 0)\r\n'.encode(), got
        got = await command(rev2, b"sel", 'SELECT "Bücher"'.encode())
        assert got[-1].startswith(b"sel OK"), got
        got = listed(await command(rev1, b"l1", b'LIST "" "*"'))
        assert b'* LIST (\\HasNoChildren) "." B&APw-cher' in got, got
        assert b'* LIST (\\HasNoChildren) "." Gr&APwA3w-e.&ZeVnLA-' in got, got
        assert b'* LIST (\\HasNoChildren) "." A&-B' in got, got
        bad = [
            b'CREATE "B\xc3cher"',  # not UTF-8
            b'CREATE "\xed\xa0\x80x"',  # a surrogate
            b"CREATE {5+}\r\nab\x00cd",  # NUL
            b'CREATE "ab\x01cd"',  # a control character
            b'CREATE "a..b"',
            b'RENAME "B\xc3\xbccher" "x\xff"',
            b'SELECT "\xff"',
        ]
        for n, line in enumerate(bad):
            tag = b"b%d" % n
            answer = (await command(rev2, tag, line))[-1]
            assert answer.startswith(tag + b" NO"), (line, answer)
        answer = (await command(rev2, b"lp", b'LIST "" "\xff*"'))[-1]
        assert answer.startswith(b"lp BAD"), answer  # a bad pattern, as a bad mUTF-7 one
        assert (await command(rev2, b"n", b"NOOP"))[-1].startswith(b"n OK")
    finally:
        rev1.close()
        rev2.close()
