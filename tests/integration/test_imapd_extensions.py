# ruff: noqa: F811 - the fixtures imported from test_imapd are the parameters
"""imapd's QUOTA, SPECIAL-USE, NAMESPACE, ID, ENABLE and SASL-IR on a real nats-server and
store, spoken to on the wire (#13, LOCAL-33; RFC 9208, 6154, 2342, 2971, 5161, 4959)."""

from __future__ import annotations

import base64
import re

import pytest

from qmesh.directory import admin
from qmesh.directory.namespaces import Target
from tests.integration.test_imapd import (  # noqa: F401 - fixtures
    MESSAGE,
    PASSWORD,
    Raw,
    Stack,
    certificate,
    settings,
    stack,
)

pytestmark = pytest.mark.integration


async def session(stack: Stack, account: str) -> Raw:
    raw = await Raw.connect(stack.port())
    await raw.send(f'l LOGIN "{account}@{stack.domain}" "{PASSWORD}"\r\n'.encode())
    assert (await raw.until(b"l"))[-1].startswith(b"l OK")
    return raw


async def command(raw: Raw, tag: bytes, line: bytes) -> list[bytes]:
    await raw.send(tag + b" " + line + b"\r\n")
    return await raw.until(tag)


async def append(raw: Raw, tag: bytes, folder: bytes, message: bytes) -> bytes:
    await raw.send(tag + b" APPEND " + folder + b" {%d+}\r\n" % len(message) + message + b"\r\n")
    return (await raw.until(tag))[-1]


# --- QUOTA ---------------------------------------------------------------------------------


async def test_quota_reported_and_append_over_it_refused(stack: Stack) -> None:
    await stack.add_account("quinn")
    quinn = Target(stack.domain, "quinn")
    await admin.set_quota(stack.directory, quinn, 4096)
    await stack.deliver("quinn", MESSAGE * 10, 1)  # 1 KiB or so: stored with LF ends
    used_kib = -(-len(MESSAGE * 10) // 1024)  # rounded up, as Dovecot reports it
    raw = await session(stack, "quinn")
    try:
        caps = b"".join(await command(raw, b"c", b"CAPABILITY"))
        assert b" QUOTA " in caps and b" QUOTA=RES-STORAGE" in caps
        got = await command(raw, b"q1", b"GETQUOTAROOT INBOX")
        assert got == [
            b'* QUOTAROOT INBOX "User quota"\r\n',
            b'* QUOTA "User quota" (STORAGE %d 4)\r\n' % used_kib,
            b"q1 OK GETQUOTAROOT completed.\r\n",
        ]
        got = await command(raw, b"q2", b'GETQUOTA "User quota"')
        assert got[0] == b'* QUOTA "User quota" (STORAGE %d 4)\r\n' % used_kib
        assert (await command(raw, b"q3", b'GETQUOTA ""'))[-1].startswith(b"q3 NO [NONEXISTENT]")
        assert (await command(raw, b"q4", b"GETQUOTAROOT Nowhere"))[-1].startswith(b"q4 NO")
        assert (await command(raw, b"q5", b'SETQUOTA "User quota" (STORAGE 9)'))[-1].startswith(
            b"q5 NO [NOPERM]"
        )

        big = b"Subject: big\r\n\r\n" + b"x" * 4000 + b"\r\n"
        assert (await append(raw, b"a1", b"INBOX", big)).startswith(b"a1 NO [OVERQUOTA]")
        await command(raw, b"s", b"SELECT INBOX")
        assert (await command(raw, b"a2", b"COPY 1:* INBOX"))[-1].startswith(b"a2 OK")
        assert (await command(raw, b"a3", b"COPY 1:* INBOX"))[-1].startswith(b"a3 NO [OVERQUOTA]")
        assert (await command(raw, b"a4", b"STATUS INBOX (MESSAGES)"))[0] == (
            b"* STATUS INBOX (MESSAGES 2)\r\n"  # nothing of the refused ones was stored
        )

        await admin.set_quota(stack.directory, quinn, 64 * 1024)  # read on the next command
        assert (await append(raw, b"a5", b"Sent", big)).startswith(b"a5 OK")
        got = await command(raw, b"q6", b"GETQUOTAROOT Sent")
        assert got[0] == b'* QUOTAROOT Sent "User quota"\r\n'
        used = 2 * len(MESSAGE * 10) + len(big.replace(b"\r\n", b"\n"))  # every folder
        assert got[1] == b'* QUOTA "User quota" (STORAGE %d 64)\r\n' % -(-used // 1024)
    finally:
        raw.close()


async def test_no_quota_is_no_quota_root(stack: Stack) -> None:
    await stack.add_account("una")
    raw = await session(stack, "una")
    try:
        got = await command(raw, b"q1", b"GETQUOTAROOT INBOX")
        assert got == [b"* QUOTAROOT INBOX\r\n", b"q1 OK GETQUOTAROOT completed.\r\n"]
        assert (await command(raw, b"q2", b'GETQUOTA "User quota"'))[-1].startswith(b"q2 NO")
        assert (await append(raw, b"a1", b"INBOX", MESSAGE)).startswith(b"a1 OK")
        for bad in (b"GETQUOTA", b"GETQUOTAROOT", b'GETQUOTAROOT "a..b"', b"SETQUOTA x (("):
            answer = (await command(raw, b"b", bad))[-1]
            assert answer.startswith((b"b BAD", b"b NO")), (bad, answer)
    finally:
        raw.close()


# --- SPECIAL-USE ---------------------------------------------------------------------------


async def test_special_use_attributes_in_list(stack: Stack) -> None:
    await stack.add_account("sue")
    raw = await session(stack, "sue")
    try:
        caps = b"".join(await command(raw, b"c", b"CAPABILITY"))
        assert b" SPECIAL-USE" in caps
        listed = await command(raw, b"l1", b'LIST "" "*"')
        for name in (b"Sent", b"Drafts", b"Trash", b"Junk"):
            assert b'* LIST (\\HasNoChildren \\%b) "." %b\r\n' % (name, name) in listed, listed
        assert b'* LIST (\\HasNoChildren) "." INBOX\r\n' in listed
        only = await command(raw, b"l2", b'LIST (SPECIAL-USE) "" "*"')
        assert sorted(only[:-1]) == sorted(  # RFC 5258 4: children only if asked for
            b'* LIST (\\%b) "." %b\r\n' % (n, n) for n in (b"Sent", b"Drafts", b"Trash", b"Junk")
        )
        returned = await command(raw, b"l3", b'LIST "" "S*" RETURN (SPECIAL-USE CHILDREN)')
        assert returned[:-1] == [b'* LIST (\\HasNoChildren \\Sent) "." Sent\r\n']
        lsub = await command(raw, b"l4", b'LSUB "" "Sent"')
        assert lsub[0] == b'* LSUB (\\HasNoChildren \\Sent) "." Sent\r\n'
        for bad in (
            b'LIST (RECURSIVEMATCH) "" "*"',
            b'LIST "" "*" RETURN (STATUS',
            b'LIST ( "" "*"',
        ):
            assert (await command(raw, b"b", bad))[-1].startswith(b"b BAD"), bad
    finally:
        raw.close()


# --- NAMESPACE, ID, ENABLE, SASL-IR --------------------------------------------------------


async def test_namespace_id_and_enable(stack: Stack) -> None:
    await stack.add_account("nina")
    raw = await session(stack, "nina")
    try:
        assert await command(raw, b"n", b"NAMESPACE") == [
            b'* NAMESPACE (("" ".")) NIL NIL\r\n',
            b"n OK NAMESPACE completed.\r\n",
        ]
        got = await command(raw, b"i1", b'ID ("name" "imaplib" "version" "3.11")')
        assert got[0] == b'* ID ("name" "qmesh imapd")\r\n'
        assert (await command(raw, b"i2", b"ID NIL"))[-1].startswith(b"i2 OK")
        assert (await command(raw, b"i3", b'ID ("odd")'))[-1].startswith(b"i3 BAD")
        got = await command(raw, b"e1", b"ENABLE UTF8=ACCEPT X-UNKNOWN")
        assert got == [b"* ENABLED\r\n", b"e1 OK ENABLE completed.\r\n"]
        assert (await command(raw, b"e2", b"ENABLE"))[-1].startswith(b"e2 BAD")
        assert (await command(raw, b"e3", b"ENABLE (x)"))[-1].startswith(b"e3 BAD")
    finally:
        raw.close()


async def test_sasl_ir(stack: Stack) -> None:
    await stack.add_account("ivy")
    user = f"ivy@{stack.domain}".encode()
    raw = await Raw.connect(stack.port())
    try:
        caps = b"".join(await command(raw, b"c", b"CAPABILITY"))
        assert b" SASL-IR" in caps and b"AUTH=PLAIN" in caps
        wrong = base64.b64encode(b"\0" + user + b"\0wrong")
        assert (await command(raw, b"a1", b"AUTHENTICATE PLAIN " + wrong))[-1].startswith(b"a1 NO")
        for bad in (b"AUTHENTICATE PLAIN ***", b"AUTHENTICATE PLAIN abc=d", b"AUTHENTICATE"):
            assert (await command(raw, b"b", bad))[-1].startswith(b"b BAD"), bad
        empty = (await command(raw, b"a2", b"AUTHENTICATE PLAIN ="))[-1]  # PLAIN needs three
        assert empty.startswith((b"a2 BAD", b"a2 NO")), empty
        right = base64.b64encode(b"\0" + user + b"\0" + PASSWORD.encode())
        assert (await command(raw, b"a3", b"AUTHENTICATE PLAIN " + right))[-1].startswith(b"a3 OK")
        assert (await command(raw, b"s", b"SELECT INBOX"))[-1].startswith(b"s OK")
    finally:
        raw.close()


# --- CONDSTORE -----------------------------------------------------------------------------

_MODSEQ = re.compile(rb"MODSEQ \(([0-9]+)\)")
_HIGHEST = re.compile(rb"\[HIGHESTMODSEQ ([0-9]+)\]")


def modseqs(lines: list[bytes]) -> dict[int, int]:
    """Sequence number -> MODSEQ of the FETCH responses among ``lines``."""
    out: dict[int, int] = {}
    for line in lines:
        m = _MODSEQ.search(line)
        if line.startswith(b"* ") and b" FETCH " in line and m:
            out[int(line.split()[1])] = int(m.group(1))
    return out


async def test_condstore(stack: Stack) -> None:
    """RFC 7162 3.1: HIGHESTMODSEQ, FETCH MODSEQ and CHANGEDSINCE, STORE UNCHANGEDSINCE with
    MODIFIED, SEARCH MODSEQ, and ENABLE CONDSTORE."""
    await stack.add_account("cora")
    for seq in (1, 2, 3):
        await stack.deliver("cora", MESSAGE, seq)
    raw = await session(stack, "cora")
    other = await session(stack, "cora")
    try:
        assert b" CONDSTORE" in b"".join(await command(raw, b"c", b"CAPABILITY"))
        plain = await command(raw, b"s0", b"SELECT INBOX")
        assert not any(_HIGHEST.search(line) for line in plain)  # only once it is on
        selected = b"".join(await command(raw, b"s1", b"SELECT INBOX (CONDSTORE)"))
        highest = int(_HIGHEST.findall(selected)[0])
        first = modseqs(await command(raw, b"f1", b"FETCH 1:* (FLAGS MODSEQ)"))
        assert set(first) == {1, 2, 3} and max(first.values()) <= highest

        stored = await command(raw, b"t1", b"STORE 2 +FLAGS (\\Flagged)")
        after = modseqs(stored)[2]  # STORE's FETCH carries MODSEQ once CONDSTORE is on
        assert after > highest
        changed = await command(raw, b"f2", b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest)
        assert modseqs(changed) == {2: after}
        found = await command(raw, b"q1", b"SEARCH MODSEQ %d" % (highest + 1))
        assert found[0] == b"* SEARCH 2 (MODSEQ %d)\r\n" % after
        unchanged = await command(raw, b"q2", b"SEARCH NOT MODSEQ %d" % (highest + 1))
        assert unchanged[0] == b"* SEARCH 1 3 (MODSEQ %d)\r\n" % max(first[1], first[3])

        # another session changes message 3 meanwhile
        await command(other, b"o1", b"SELECT INBOX")
        assert (await command(other, b"o2", b"STORE 3 +FLAGS (\\Answered)"))[-1].startswith(
            b"o2 OK"
        )
        cond = await command(raw, b"t2", b"STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % after)
        assert cond[-1].startswith(b"t2 OK [MODIFIED 3]"), cond
        assert set(modseqs(cond)) >= {1, 2}, cond
        # 3 may be told of, with the other session's flags: never with \Seen
        assert not [line for line in cond if line.startswith(b"* 3 ") and b"\\Seen" in line]
        flags = b"".join(await command(raw, b"f3", b"FETCH 3 (FLAGS)"))
        assert b"\\Seen" not in flags  # left alone: changed after UNCHANGEDSINCE
        silent = await command(raw, b"t3", b"UID STORE 1 (UNCHANGEDSINCE 1) +FLAGS.SILENT (x)")
        assert silent[-1].startswith(b"t3 OK [MODIFIED 1]"), silent

        for n, bad in enumerate(
            [
                b"FETCH 1 (FLAGS) (CHANGEDSINCE x)",
                b"FETCH 1 (FLAGS) (CHANGEDSINCE 99999999999999999999)",
                b"STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)",
                b"SEARCH MODSEQ",
                b"SEARCH MODSEQ 99999999999999999999",
                b"FETCH 1 (MODSEQX)",
            ]
        ):
            tag = b"b%d" % n
            assert (await command(raw, tag, bad))[-1].startswith(tag + b" BAD"), bad

        assert await command(other, b"e1", b"ENABLE CONDSTORE") == [
            b"* ENABLED CONDSTORE\r\n",
            b"e1 OK ENABLE completed.\r\n",
        ]
        # a change made by the other session reaches this one with its MODSEQ (RFC 7162 3.1.4)
        await command(raw, b"t4", b"STORE 1 -FLAGS (x)")
        told = await command(other, b"o4", b"NOOP")
        assert told[0].startswith(b"* 1 FETCH (FLAGS (") and b" MODSEQ (" in told[0], told
        reselected = b"".join(await command(other, b"o3", b"EXAMINE INBOX"))
        latest = int(_HIGHEST.findall(reselected)[0])
        assert latest >= after
        status = await command(raw, b"st", b"STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
        assert status[0] == b"* STATUS INBOX (MESSAGES 3 HIGHESTMODSEQ %d)\r\n" % latest
    finally:
        raw.close()
        other.close()


async def test_hostile_input_to_the_extensions(stack: Stack) -> None:
    """Every new parser refuses garbage with BAD or NO, quickly, and the session goes on."""
    await stack.add_account("mal")
    await stack.deliver("mal", MESSAGE, 1)
    pre = await Raw.connect(stack.port())
    try:
        for n, bad in enumerate(
            [
                b"AUTHENTICATE PLAIN " + b"A" * 60000 + b"=x",
                b"AUTHENTICATE PLAIN " + base64.b64encode(b"\0" * 40000),
                b"AUTHENTICATE PLAIN ==",
            ]
        ):
            tag = b"p%d" % n
            answer = (await command(pre, tag, bad))[-1]
            assert answer.startswith((tag + b" BAD", tag + b" NO")), answer[:80]
    finally:
        pre.close()
    raw = await session(stack, "mal")
    try:
        await command(raw, b"s", b"SELECT INBOX")
        for n, bad in enumerate(
            [
                b'SETQUOTA "" (' + b"a 1 " * 15000,
                b'SETQUOTA "" (' + b"STORAGE 1 " * 5000 + b")",
                b"GETQUOTAROOT {4294967296}",
                b'GETQUOTA "a" "b"',
                b"ENABLE " + b"X " * 30000,
                b"ENABLE CONDSTORE (",
                b"LIST " + b"(" * 1000 + b' "" *',
                b'LIST (SPECIAL-USE "" *',
                b'LIST "" * RETURN (' + b"CHILDREN " * 5000,
                b"NAMESPACE x",
                b"FETCH 1 (" + b"MODSEQ " * 8000 + b")",
                b"SEARCH MODSEQ -1",
                b"SEARCH " + b"NOT " * 10000 + b"MODSEQ 1",
                b"STORE 1 (UNCHANGEDSINCE 1 2) +FLAGS (x)",
                b"STORE 1 (UNCHANGEDSINCE 99999999999999999999) +FLAGS (x)",
                b"SELECT INBOX (CONDSTORE",
            ]
        ):
            tag = b"h%d" % n
            answer = (await command(raw, tag, bad))[-1]
            refused = answer.startswith((tag + b" BAD", tag + b" NO"))
            well_formed = bad.startswith((b"FETCH 1 (MODSEQ", b"SEARCH NOT"))  # long, valid
            assert refused or (well_formed and answer.startswith(tag + b" OK")), (bad[:60], answer)
        assert (await command(raw, b"n", b"NOOP"))[-1].startswith(b"n OK")
        quota = await command(raw, b"q", b"GETQUOTAROOT INBOX")
        assert quota[-1].startswith(b"q OK")
    finally:
        raw.close()
