"""imapd next to Dovecot (Debian's dovecot-imapd) on the same messages and the same commands.

Dovecot runs on a loopback port over a Maildir holding the messages ``local`` would write;
imapd serves the same messages from the store. The answers a client depends on are compared:
message counts, UIDs, flags, sizes, BODYSTRUCTURE, sections, partial fetches and SEARCH
results. Every difference that remains is listed in :data:`DELIBERATE` with its reason.
Dovecot runs with its quota plugin and the four special-use folders, so two more scripts
compare the extensions (QUOTA, SPECIAL-USE, NAMESPACE, ENABLE; :data:`DELIBERATE_EXTENSIONS`)
and CONDSTORE.
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from qmesh.directory import admin
from qmesh.directory.namespaces import Target
from tests.integration.test_imapd import (  # noqa: F401 - fixtures
    PASSWORD,
    Stack,
    certificate,
    open_stack,
    settings,
    stack,
)
from tests.servers import free_ports

pytestmark = pytest.mark.integration
DOVECOT = Path("/usr/sbin/dovecot")
QUOTA = 64 * 1024  # both servers' storage limit for alice

MESSAGES = [
    b"From: Bob <bob@example.test>\nTo: alice@example.test\nSubject: first\n"
    b"Date: Mon, 1 Dec 2025 10:00:00 +0000\nMessage-ID: <1@example.test>\n\nhello\nworld\n",
    b"From: carol@example.test\nSubject: parts\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain; '
    b'charset="us-ascii"\n\nthe text\n--b\nContent-Type: application/octet-stream\n'
    b"Content-Transfer-Encoding: base64\n\nAAAA\n--b--\n",
    b"Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\nContent-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n\ngr\xc3\xbc\xc3\x9fe\n" + b"line\n" * 50,
]

# The same commands on both servers; each answer is compared after normalise().
SCRIPT: list[tuple[str, tuple[str, ...]]] = [
    ("SELECT", ("INBOX",)),
    ("UID", ("FETCH", "1:*", "(FLAGS RFC822.SIZE)")),
    ("FETCH", ("1:*", "(BODYSTRUCTURE)")),
    ("FETCH", ("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")),
    ("FETCH", ("1:*", "(BODY.PEEK[]<0.20>)")),
    ("FETCH", ("1", "(BODY.PEEK[TEXT])")),
    ("FETCH", ("2", "(BODY.PEEK[2])")),
    ("SEARCH", ("TEXT", "hello")),
    ("SEARCH", ("HEADER", "Subject", "parts")),
    ("SEARCH", ("LARGER", "200")),
    ("SEARCH", ("UID", "2:*")),
    ("STORE", ("1", "+FLAGS", r"(\Flagged)")),
    ("SEARCH", ("FLAGGED",)),
    ("SEARCH", ("UNSEEN",)),
    ("FETCH", ("2", "(BODY[1])")),
    ("FETCH", ("1:*", "(FLAGS)")),
]

# What differs on purpose (or is pymap's and not worth a fork): command -> reason.
DELIBERATE: dict[str, str] = {
    "FETCH (1:*, (BODYSTRUCTURE))": (
        'pymap writes a missing Content-Transfer-Encoding as "7BIT" where Dovecot writes '
        '"7bit" (case-insensitive, RFC 3501 9), adds no default ("charset" "us-ascii") '
        "to a text part without parameters, and counts the CRLF before a boundary into the "
        "part before it (pymap's MIME parser)"
    ),
    "FETCH (2, (BODY.PEEK[2]))": "pymap keeps the CRLF before a boundary in the part",
    "FETCH (2, (BODY[1]))": "pymap keeps the CRLF before a boundary in the part",
}


@pytest.fixture
def dovecot(request: pytest.FixtureRequest) -> Iterator[int]:
    quota: int = getattr(request, "param", QUOTA)  # a test may ask for a larger one
    if not DOVECOT.exists():
        pytest.skip("dovecot-imapd is not installed (deploy/ci/system-packages.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("Dovecot's master process needs root to switch to the mail user here")
    # Dovecot's auth and mail processes run as other users: pytest's tmp_path (0700 under
    # root's directory) is not reachable for them, so the directory is made world-traversable.
    base = Path(tempfile.mkdtemp(prefix="qmesh-dovecot-"))
    os.chmod(base, 0o755)
    for sub in ("run", "state", "mail/alice/Maildir/new", "mail/alice/Maildir/cur"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for i, content in enumerate(MESSAGES):
        size = len(content) + content.count(b"\n")  # RFC822.SIZE, as local names it
        (base / f"mail/alice/Maildir/new/{1764583200 + i}.M{i}P1.test,W={size}").write_bytes(
            content
        )
    (base / "passwd").write_text(f"alice:{{PLAIN}}{PASSWORD}\n")
    shutil.chown(base / "mail", "nobody", "nogroup")
    subprocess.run(["chown", "-R", "nobody:nogroup", str(base / "mail")], check=True)
    (port,) = free_ports(1)
    conf = base / "dovecot.conf"
    conf.write_text(
        f"""protocols = imap
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{base}/mail/%n/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {base}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={base}/mail/%n
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
namespace inbox {{
  inbox = yes
  separator = .
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
}}
mail_plugins = quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage={quota // 1024}K
}}
service imap-login {{
  chroot =
}}
"""
    )
    proc = subprocess.Popen([str(DOVECOT), "-F", "-c", str(conf)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                imaplib.IMAP4("127.0.0.1", port, timeout=2).logout()
                break
            except OSError:
                time.sleep(0.2)
        else:
            log = (base / "dovecot.log").read_text() if (base / "dovecot.log").exists() else ""
            pytest.fail(f"dovecot did not start: {log}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(base, ignore_errors=True)


_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_FIELDS = re.compile(rb"HEADER\.FIELDS \(([^)]*)\)")
_UID = re.compile(rb" ?UID ([0-9]+)")


def same_order(line: bytes) -> bytes:
    """Order carries no meaning in a flag list, a header-field list or among FETCH items."""
    line = _FLAGS.sub(lambda m: b"FLAGS (" + b" ".join(sorted(m.group(1).split())) + b")", line)
    line = _FIELDS.sub(
        lambda m: b"HEADER.FIELDS (" + b" ".join(sorted(m.group(1).split())) + b")", line
    )
    uid = _UID.search(line)
    if uid and b"(" in line:
        line = _UID.sub(b"", line, count=1).replace(b"(", b"(UID " + uid.group(1) + b" ", 1)
    return re.sub(rb"  +", b" ", line).replace(b"( ", b"(")


def normalise(typ: str, data: Sequence[object]) -> object:
    out: list[object] = [typ]
    for item in data:
        if isinstance(item, tuple):
            head, *literal = (bytes(x) for x in item)  # a literal's bytes stay as they are
            out.append((same_order(head), *literal))
        elif isinstance(item, bytes):
            out.append(same_order(item))
    return out


def transcript(port: int, user: str) -> dict[str, object]:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    imap.login(user, PASSWORD)
    answers: dict[str, object] = {}
    for command, args in SCRIPT:
        key = f"{command} ({', '.join(args)})"
        if command == "SELECT":
            typ, data = imap.select(args[0])
            answers[key] = [typ, data, imap.untagged_responses.get("UIDNEXT")]
        elif command == "UID":
            answers[key] = normalise(*imap.uid(*args))
        elif command == "SEARCH":
            answers[key] = normalise(*imap.search(None, *args))
        elif command == "STORE":
            answers[key] = normalise(*imap.store(*args))
        else:
            answers[key] = normalise(*imap.fetch(*args))
    imap.logout()
    return answers


async def test_same_answers_as_dovecot(stack: Stack, dovecot: int) -> None:  # noqa: F811
    await stack.add_account("alice")
    for i, content in enumerate(MESSAGES):
        await stack.deliver("alice", content, i)
    theirs = await asyncio.to_thread(transcript, dovecot, "alice")
    ours = await asyncio.to_thread(transcript, stack.port(), f"alice@{stack.domain}")
    differences = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    stale = [k for k in DELIBERATE if k not in differences]
    assert not stale, f"no longer different from Dovecot, remove from DELIBERATE: {stale}"
    unexplained = {k: v for k, v in differences.items() if k not in DELIBERATE}
    assert not unexplained, "\n".join(
        f"{k}:\n  imapd   {o!r}\n  dovecot {t!r}" for k, (o, t) in unexplained.items()
    )


# The extensions' commands, sent raw; the untagged lines (in order unless the order means
# nothing) and the tagged status with its response code are compared.
EXTENSIONS_SCRIPT: list[bytes] = [
    b'LIST "" "*"',
    b'LIST (SPECIAL-USE) "" "*"',
    b'LIST "" "S*" RETURN (SPECIAL-USE)',
    b'LSUB "" "*"',
    b"NAMESPACE",
    b"GETQUOTAROOT INBOX",
    b'GETQUOTA "User quota"',
    b"ENABLE X-UNKNOWN",
    b"APPEND Drafts {%d+}\r\n" % (QUOTA + 10) + b"x" * (QUOTA + 10),
    b"SELECT INBOX",
    b"COPY 1:* Trash",
    b"GETQUOTAROOT Trash",
]
UNORDERED = (b"LIST", b"LSUB")
DELIBERATE_EXTENSIONS: dict[str, str] = {
    'LSUB "" "*"': (
        "INBOX is subscribed from the account's first login (Dovecot subscribes only the "
        "folders it is told to), and pymap's \\HasNoChildren stays in LSUB (RFC 3348 allows it)"
    ),
    "ENABLE X-UNKNOWN": (
        "an empty '* ENABLED' when nothing was enabled (RFC 5161's enable-data may be empty); "
        "Dovecot sends no line"
    ),
}
_TAGGED = re.compile(rb"^x[0-9]+ (OK|NO|BAD)( \[[A-Z-]+(?: [0-9,:]+)?\])?")
_WANTED = re.compile(rb"^\* (LIST|LSUB|NAMESPACE|QUOTA|QUOTAROOT|ENABLED)\b")


CONDSTORE_SCRIPT: list[bytes] = [
    b"SELECT INBOX (CONDSTORE)",
    b"FETCH 1:* (FLAGS MODSEQ)",
    b"STORE 2 +FLAGS (\\Flagged)",
    b"FETCH 1:* (FLAGS) (CHANGEDSINCE {H})",
    b"SEARCH MODSEQ {H+1}",
    b"STORE 1:3 (UNCHANGEDSINCE {H}) +FLAGS (\\Seen)",
    b"UID FETCH 1:* (FLAGS)",
    b"STATUS Trash (HIGHESTMODSEQ MESSAGES UIDNEXT)",
    b"STATUS Sent (MESSAGES HIGHESTMODSEQ)",
]
_CONDSTORE_WANTED = re.compile(rb"^\* (OK \[HIGHESTMODSEQ|[0-9]+ FETCH|SEARCH|STATUS)\b")
_NUMBERS = re.compile(rb"(MODSEQ \(|HIGHESTMODSEQ |\(MODSEQ )[0-9]+")


def modseq_first(line: bytes) -> bytes:
    """FETCH items in any order: ``MODSEQ (N)`` put first, as Dovecot writes it."""
    if b" MODSEQ (N)" not in line or b"FETCH (MODSEQ" in line:
        return line
    line = line.replace(b" MODSEQ (N)", b"", 1)
    return line.replace(b"FETCH (", b"FETCH (MODSEQ (N) ", 1)


def raw_transcript(
    port: int,
    user: str,
    script: Sequence[bytes] = EXTENSIONS_SCRIPT,
    wanted: re.Pattern[bytes] = _WANTED,
) -> dict[str, object]:
    """The answers to ``script``; ``{H}`` in a command is the server's own HIGHESTMODSEQ from
    the last SELECT, whose value (and every MODSEQ's) differs between servers and is compared
    only as ``N``; ``{H1}`` is the first HIGHESTMODSEQ the server named and ``{V}`` the first
    UIDVALIDITY (QRESYNC)."""
    import socket

    answers: dict[str, object] = {}
    highest = 0
    first: dict[bytes, bytes] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(f'x0 LOGIN "{user}" "{PASSWORD}"\r\n'.encode())
        while not f.readline().startswith(b"x0 "):
            pass
        sock.sendall(b"x00 CAPABILITY\r\n")
        caps = set(f.readline().split())
        f.readline()
        answers["CAPABILITY"] = sorted(
            c
            for c in caps
            if c
            in {b"NAMESPACE", b"ENABLE", b"QUOTA", b"SPECIAL-USE", b"ID", b"SASL-IR", b"CONDSTORE"}
        )
        for n, line in enumerate(script, 1):
            tag = b"x%d" % n
            sent = line.replace(b"{H}", b"%d" % highest).replace(b"{H+1}", b"%d" % (highest + 1))
            sent = sent.replace(b"{H1}", first.get(b"H", b"0")).replace(
                b"{V}", first.get(b"V", b"0")
            )
            sock.sendall(tag + b" " + sent + b"\r\n")
            untagged: list[bytes] = []
            while True:
                got = f.readline()
                assert got, line
                if got.startswith(tag + b" "):
                    break
                found = re.search(rb"\[HIGHESTMODSEQ ([0-9]+)\]", got)
                if found:
                    highest = int(found.group(1))
                    first.setdefault(b"H", found.group(1))
                validity = re.search(rb"\[UIDVALIDITY ([0-9]+)\]", got)
                if validity:
                    first.setdefault(b"V", validity.group(1))
                if wanted.match(got):
                    line_n = _NUMBERS.sub(rb"\1N", got.rstrip(b"\r\n"))
                    untagged.append(modseq_first(same_order(line_n)))
            if line.startswith(UNORDERED):
                untagged.sort()
            status = _TAGGED.match(got)
            assert status is not None, got
            answers[line[:40].decode()] = (status.group(0)[len(tag) + 1 :], untagged)
        sock.sendall(b"x99 LOGOUT\r\n")
    return answers


async def test_extensions_as_dovecot(stack: Stack, dovecot: int) -> None:  # noqa: F811
    """QUOTA, SPECIAL-USE, NAMESPACE and ENABLE next to Dovecot with its quota plugin and the
    same special-use folders (#13)."""
    await stack.add_account("alice")
    await admin.set_quota(stack.directory, Target(stack.domain, "alice"), QUOTA)
    for i, content in enumerate(MESSAGES):
        await stack.deliver("alice", content, i)
    theirs = await asyncio.to_thread(raw_transcript, dovecot, "alice")
    ours = await asyncio.to_thread(raw_transcript, stack.port(), f"alice@{stack.domain}")
    differences = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    stale = [k for k in DELIBERATE_EXTENSIONS if k not in differences]
    assert not stale, f"no longer different from Dovecot, remove: {stale}"
    unexplained = {k: v for k, v in differences.items() if k not in DELIBERATE_EXTENSIONS}
    assert not unexplained, "\n".join(
        f"{k}:\n  imapd   {o!r}\n  dovecot {t!r}" for k, (o, t) in unexplained.items()
    )


async def test_condstore_as_dovecot(stack: Stack, dovecot: int) -> None:  # noqa: F811
    """CONDSTORE: which messages each answer names, with MODSEQ values compared only as
    present (the two servers number changes differently) (#13, RFC 7162)."""
    await stack.add_account("alice")
    for i, content in enumerate(MESSAGES):
        await stack.deliver("alice", content, i)
    script, wanted = CONDSTORE_SCRIPT, _CONDSTORE_WANTED
    theirs = await asyncio.to_thread(raw_transcript, dovecot, "alice", script, wanted)
    ours = await asyncio.to_thread(
        raw_transcript, stack.port(), f"alice@{stack.domain}", script, wanted
    )
    differences = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert not differences, "\n".join(
        f"{k}:\n  imapd   {o!r}\n  dovecot {t!r}" for k, (o, t) in differences.items()
    )


# QRESYNC (RFC 7162 3.2): VANISHED for expunges, SELECT's resynchronisation, UID FETCH's
# VANISHED modifier, and the BAD answers to its misuse.
QRESYNC_SCRIPT: list[bytes] = [
    b"SELECT INBOX (QRESYNC (1 1))",  # before ENABLE QRESYNC: BAD
    b"ENABLE QRESYNC",
    b"SELECT INBOX",
    b"STORE 2 +FLAGS (\\Deleted)",
    b"EXPUNGE",
    b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {H1} VANISHED)",
    b"UID FETCH 2:3 (FLAGS) (CHANGEDSINCE {H1} VANISHED)",
    b"FETCH 1:* (FLAGS) (CHANGEDSINCE {H1} VANISHED)",  # not UID FETCH: BAD
    b"UID FETCH 1:* (FLAGS) (VANISHED)",  # no CHANGEDSINCE: BAD
    b"STORE 1 +FLAGS (\\Seen)",
    b"SELECT Trash",
    b"SELECT INBOX (QRESYNC ({V} {H1} 1:5))",
    b"SELECT INBOX (QRESYNC ({V} {H1}))",
    b"SELECT INBOX (QRESYNC ({V} {H1} 3:5))",
    b"SELECT INBOX (QRESYNC ({V} {H1} 1:5 (1:2 1,3)))",
    b"SELECT INBOX (QRESYNC (1 {H1} 1:5))",  # another UIDVALIDITY: a plain SELECT
    b"SELECT INBOX (QRESYNC ({V} {H1} 5:x))",  # malformed: BAD
    b"SELECT INBOX (QRESYNC ({V}))",
]
_QRESYNC_WANTED = re.compile(
    rb"^\* (OK \[(HIGHESTMODSEQ|CLOSED)|[0-9]+ FETCH|VANISHED|ENABLED|[0-9]+ EXPUNGE)\b"
)
DELIBERATE_QRESYNC: dict[str, str] = {
    "SELECT INBOX (QRESYNC ({V} {H1} 5:x))": (
        "a SELECT answered BAD leaves the selected folder selected (a BAD command changes no "
        "state); Dovecot closes it first and says [CLOSED]"
    ),
}


async def test_qresync_as_dovecot(stack: Stack, dovecot: int) -> None:  # noqa: F811
    """QRESYNC next to Dovecot: the same VANISHED sets and changed messages (#13, RFC 7162)."""
    await stack.add_account("alice")
    for i, content in enumerate(MESSAGES):
        await stack.deliver("alice", content, i)
    script, wanted = QRESYNC_SCRIPT, _QRESYNC_WANTED
    theirs = await asyncio.to_thread(raw_transcript, dovecot, "alice", script, wanted)
    ours = await asyncio.to_thread(
        raw_transcript, stack.port(), f"alice@{stack.domain}", script, wanted
    )
    differences = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    stale = [k for k in DELIBERATE_QRESYNC if k not in differences]
    assert not stale, f"no longer different from Dovecot, remove: {stale}"
    unexplained = {k: v for k, v in differences.items() if k not in DELIBERATE_QRESYNC}
    assert not unexplained, "\n".join(
        f"{k}:\n  imapd   {o!r}\n  dovecot {t!r}" for k, (o, t) in unexplained.items()
    )


# Keywords (RFC 9051 2.3.2): stored, fetched, searched, announced in FLAGS and PERMANENTFLAGS.
KEYWORDS_SCRIPT: list[bytes] = [
    b"SELECT INBOX",
    b"STORE 1 +FLAGS ($Forwarded $Junk)",
    b"STORE 2 +FLAGS (MyLabel $NotJunk)",
    b"FETCH 1:* (FLAGS)",
    b"SELECT INBOX",
    b"SEARCH KEYWORD $Junk",
    b"SEARCH UNKEYWORD $Junk",
    b"STORE 1 -FLAGS ($Junk)",
    b"SEARCH KEYWORD $Junk",
    b"STORE 3 +FLAGS (\\Bogus)",
    b"APPEND Drafts ($NotJunk \\Seen) {14+}\r\nSubject: k\r\n\r\n",
    b"SELECT Drafts",
    b"FETCH 1 (FLAGS)",
    b"STORE 1 +FLAGS (Other)",
]
_KEYWORDS_WANTED = re.compile(rb"^\* (FLAGS|OK \[PERMANENTFLAGS|[0-9]+ FETCH|SEARCH)\b")
DELIBERATE_KEYWORDS: dict[str, str] = {}


def unordered(answers: dict[str, object]) -> dict[str, object]:
    """FLAGS, PERMANENTFLAGS and FETCH in any order: pymap answers SELECT with PERMANENTFLAGS
    first and puts a STORE's own FETCH before the FLAGS update; nothing depends on that order
    (RFC 3501 7: untagged data may come in any order but EXPUNGE's)."""
    out: dict[str, object] = {}
    for key, value in answers.items():
        if isinstance(value, tuple):
            status, untagged = value
            value = (status, sorted(untagged))
        out[key] = value
    return out


async def test_keywords_as_dovecot(stack: Stack, dovecot: int) -> None:  # noqa: F811
    """$Forwarded, $Junk, $NotJunk and a user keyword kept and shown as Dovecot does (#13)."""
    await stack.add_account("alice")
    for i, content in enumerate(MESSAGES):
        await stack.deliver("alice", content, i)
    script, wanted = KEYWORDS_SCRIPT, _KEYWORDS_WANTED
    theirs = unordered(await asyncio.to_thread(raw_transcript, dovecot, "alice", script, wanted))
    ours = unordered(
        await asyncio.to_thread(
            raw_transcript, stack.port(), f"alice@{stack.domain}", script, wanted
        )
    )
    differences = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    stale = [k for k in DELIBERATE_KEYWORDS if k not in differences]
    assert not stale, f"no longer different from Dovecot, remove: {stale}"
    unexplained = {k: v for k, v in differences.items() if k not in DELIBERATE_KEYWORDS}
    assert not unexplained, "\n".join(
        f"{k}:\n  imapd   {o!r}\n  dovecot {t!r}" for k, (o, t) in unexplained.items()
    )


# What IMAP4rev2 took from extensions Dovecot 2.3 has (it has no IMAP4rev2 itself): ESEARCH's
# SEARCH RETURN, STATUS SIZE, LIST's SUBSCRIBED options, UNSELECT.
REV2_SCRIPT: list[bytes] = [
    b"SELECT INBOX",
    b"STORE 2 +FLAGS (\\Deleted)",
    b"SEARCH RETURN (MIN MAX COUNT) ALL",
    b"UID SEARCH RETURN () ALL",
    b"SEARCH RETURN (COUNT) SUBJECT nothing-like-this",
    b"SEARCH RETURN (ALL) 1,3",
    b"SEARCH RETURN (SAVE) ALL",
    b"STATUS INBOX (MESSAGES SIZE)",
    b'LIST (SUBSCRIBED) "" "*"',
    b'LIST "" "*" RETURN (SUBSCRIBED)',
    b'LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT UNSEEN))',
    b'LIST "" "S*" RETURN (SPECIAL-USE STATUS (MESSAGES))',
    b'LIST "" "*" RETURN (STATUS (MESSAGES BOGUS))',
    b"UNSELECT",
    b"FETCH 1 (FLAGS)",
    b"SELECT INBOX",
    b"SEARCH DELETED",
]
_REV2_WANTED = re.compile(rb"^\* (ESEARCH|SEARCH|STATUS|LIST|[0-9]+ EXPUNGE)\b")
DELIBERATE_REV2: dict[str, str] = {
    "STATUS INBOX (MESSAGES SIZE)": (
        "Dovecot adds [CLIENTBUG] to a STATUS of the selected folder (RFC 9051 6.3.11 "
        "discourages it); the same data"
    ),
    'LIST (SUBSCRIBED) "" "*"': "INBOX is subscribed from the account's first login",
    'LIST "" "*" RETURN (SUBSCRIBED)': "INBOX is subscribed from the account's first login",
}


async def test_rev2_pieces_as_dovecot(stack: Stack, dovecot: int) -> None:  # noqa: F811
    """ESEARCH, STATUS SIZE, LIST (SUBSCRIBED) and UNSELECT next to Dovecot (#13, RFC 9051)."""
    await stack.add_account("alice")
    for i, content in enumerate(MESSAGES):
        await stack.deliver("alice", content, i)
    script, wanted = REV2_SCRIPT, _REV2_WANTED
    theirs = await asyncio.to_thread(raw_transcript, dovecot, "alice", script, wanted)
    ours = await asyncio.to_thread(
        raw_transcript, stack.port(), f"alice@{stack.domain}", script, wanted
    )
    differences = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    stale = [k for k in DELIBERATE_REV2 if k not in differences]
    assert not stale, f"no longer different from Dovecot, remove: {stale}"
    unexplained = {k: v for k, v in differences.items() if k not in DELIBERATE_REV2}
    assert not unexplained, "\n".join(
        f"{k}:\n  imapd   {o!r}\n  dovecot {t!r}" for k, (o, t) in unexplained.items()
    )


# A message above imapd's streaming threshold (services/imapd/streaming.py), APPENDed to both
# servers, fetched whole and in parts (RFC 3501 6.4.5, RFC 9051 6.4.5): literals are compared
# by length and digest.
LARGE = (
    b"From: Bob <bob@example.test>\r\nSubject: large\r\n\r\n"
    + b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-\r\n" * 30_000
)
PARTIAL_SCRIPT: list[bytes] = [
    b"FETCH * (RFC822.SIZE)",
    b"FETCH * (BODY.PEEK[]<0.1024>)",
    b"FETCH * (BODY.PEEK[]<1048576.4096>)",
    b"FETCH * (BINARY.PEEK[]<100.100>)",
    b"FETCH * (BODY.PEEK[]<%d.100>)" % (len(LARGE) - 5),
    b"FETCH * (BODY.PEEK[]<%d.1>)" % len(LARGE),
    b"FETCH * (BODY.PEEK[]<4294967295.1>)",
    b"FETCH * (BODY.PEEK[]<0.4294967295>)",
    b"FETCH * (BODY.PEEK[])",
    b"FETCH * (RFC822.SIZE BODY.PEEK[]<10.20>)",
    b"FETCH * (BODY.PEEK[]<0.0>)",
    b"FETCH * (BODY.PEEK[]<4294967296.1>)",
    b"FETCH * (BODY.PEEK[]<0.99999999999999999999>)",
]
_LITERAL = re.compile(rb"\{([0-9]+)\}\r\n$")
DELIBERATE_PARTIAL: dict[str, str] = {
    "FETCH * (BINARY.PEEK[]<100.100>)": (
        "pymap answers BINARY[] with a literal8 (~{n}) whatever the octets; RFC 3516 4.3 allows "
        "it, Dovecot uses one only for octets with NUL"
    ),
    "FETCH * (BODY.PEEK[]<0.0>)": (
        "a partial's count is an nz-number (RFC 3501 9, RFC 9051 9): BAD, where Dovecot "
        "answers an empty string"
    ),
}


def partial_transcript(port: int, user: str) -> dict[str, object]:
    import hashlib
    import socket

    answers: dict[str, object] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(f'x0 LOGIN "{user}" "{PASSWORD}"\r\n'.encode())
        while not f.readline().startswith(b"x0 "):
            pass
        sock.sendall(b"s0 EXAMINE INBOX\r\n")  # Dovecot numbers what it finds first
        while not f.readline().startswith(b"s0 "):
            pass
        sock.sendall(b"a1 APPEND INBOX {%d+}\r\n" % len(LARGE) + LARGE + b"\r\n")
        while not (appended := f.readline()).startswith(b"a1 "):
            pass
        assert appended.startswith(b"a1 OK"), appended
        sock.sendall(b"s1 EXAMINE INBOX\r\n")
        while not f.readline().startswith(b"s1 "):
            pass
        for n, line in enumerate(PARTIAL_SCRIPT, 1):
            tag = b"x%d" % n
            sock.sendall(tag + b" " + line + b"\r\n")
            untagged: list[bytes] = []
            while True:
                got = f.readline()
                assert got, line
                if got.startswith(tag + b" "):
                    break
                literal = _LITERAL.search(got)
                while literal:
                    data = f.read(int(literal.group(1)))
                    digest = hashlib.sha256(data).hexdigest()[:16].encode()
                    got = got[: literal.start()] + b"<%d:%b>" % (len(data), digest)
                    got += f.readline()
                    literal = _LITERAL.search(got)
                untagged.append(got.rstrip(b"\r\n").replace(b'""', b"<0:e3b0c44298fc1c14>"))
            status = _TAGGED.match(got)
            assert status is not None, got
            answers[line[:48].decode()] = (status.group(0)[len(tag) + 1 :], untagged)
        sock.sendall(b"x99 LOGOUT\r\n")
    return answers


@pytest.mark.parametrize("dovecot", [16 * QUOTA * 1024], indirect=True)
async def test_partial_fetches_as_dovecot(stack: Stack, dovecot: int) -> None:  # noqa: F811
    """Partial FETCHes of a large message, past its end and with hostile origins and counts:
    the same octets and the same empty strings and BADs as Dovecot (#13)."""
    await stack.add_account("alice")
    for i, content in enumerate(MESSAGES):
        await stack.deliver("alice", content, i)
    theirs = await asyncio.to_thread(partial_transcript, dovecot, "alice")
    ours = await asyncio.to_thread(partial_transcript, stack.port(), f"alice@{stack.domain}")
    differences = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    stale = [k for k in DELIBERATE_PARTIAL if k not in differences]
    assert not stale, f"no longer different from Dovecot, remove: {stale}"
    unexplained = {k: v for k, v in differences.items() if k not in DELIBERATE_PARTIAL}
    assert not unexplained, "\n".join(
        f"{k}:\n  imapd   {o!r}\n  dovecot {t!r}" for k, (o, t) in unexplained.items()
    )
    # the literal8 aside, the same octets under the same name
    binary = "FETCH * (BINARY.PEEK[]<100.100>)"
    assert repr(ours[binary]).replace("~<", "<") == repr(theirs[binary])


# SEARCHRES (RFC 5182, part of RFC 9051): SEARCH RETURN (SAVE) and ``$`` in later commands,
# what a failed SEARCH leaves saved, and the BAD answers to ``$`` used as part of a set.
SEARCHRES_SCRIPT: list[bytes] = [
    b"SELECT INBOX",
    b"FETCH $ (UID)",
    b"SEARCH RETURN (SAVE) 2:3",
    b"FETCH $ (UID)",
    b"UID FETCH $ (UID)",
    b"STORE $ +FLAGS (\\Flagged)",
    b"SEARCH $",
    b"SEARCH RETURN (SAVE MIN) 1:3",
    b"FETCH $ (UID)",
    b"SEARCH RETURN (SAVE MIN MAX) ALL",
    b"FETCH $ (UID)",
    b"SEARCH RETURN (SAVE MIN COUNT) ALL",
    b"FETCH $ (UID)",
    b"SEARCH RETURN (SAVE) OR $ 1",
    b"SEARCH RETURN (SAVE) NOT ALL",
    b"FETCH $ (UID)",
    b"SEARCH RETURN (SAVE ALL) 1",
    b"COPY $ Trash",
    b"UID SEARCH RETURN (SAVE) UID 2",
    b"SEARCH $,1",
    b"FETCH $:3 (UID)",
    b"SEARCH RETURN (SAVE) BOGUS",
    b"FETCH $ (UID)",
    b"STORE $ +FLAGS.SILENT (\\Deleted)",
    b"UID EXPUNGE $",
    b"FETCH $ (UID)",
    b"SELECT Trash",
    b"FETCH $ (UID)",
    b"UNSELECT",
    b"FETCH $ (UID)",
]
_SEARCHRES_WANTED = re.compile(rb"^\* (ESEARCH|SEARCH|[0-9]+ FETCH|[0-9]+ EXPUNGE)\b")

# LIST-EXTENDED (RFC 5258, part of RFC 9051): selection and return options, pattern lists,
# RECURSIVEMATCH's CHILDINFO, and modified UTF-7 names for a rev1 client. Both servers are
# brought to the same subscriptions first (imapd subscribes a folder when it is created).
LIST_EXTENDED_SCRIPT: list[bytes] = [
    b"CREATE p",
    b"CREATE p.q",
    b"CREATE r",
    b"UNSUBSCRIBE p",
    b"UNSUBSCRIBE r",
    b"UNSUBSCRIBE p.q",
    b"SUBSCRIBE p.q",
    b'LIST (SUBSCRIBED RECURSIVEMATCH) "" ("p" "r" "Sent")',
    b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "p*"',
    b'LIST (SUBSCRIBED) "" ("p%" "r") RETURN (CHILDREN)',
    b'LIST (REMOTE) "" ("p" "r" "Trash") RETURN (CHILDREN SUBSCRIBED)',
    b'LIST "" ("INBOX" "Sent" "p.%")',
    b'LIST () "" ("INBOX" "Drafts") RETURN (SPECIAL-USE)',
    b'LIST (SPECIAL-USE) "" ("*")',
    b'LIST "" "*" RETURN (CHILDREN)',
    b'LIST "" "p*" RETURN (STATUS (MESSAGES))',
    b'LIST (RECURSIVEMATCH) "" "%"',
    b'LIST (BOGUS) "" "%"',
    b'LIST "" "%" RETURN (BOGUS)',
    b'LIST (SUBSCRIBED "" "%"',
    b'LIST "" ()',
    b'CREATE "B&APw-cher"',
    b'CREATE "B\xc3\xbccher"',
    b'CREATE "&Jjo"',
    b'LIST "" "B*"',
    b"DELETE p",
    b'LIST "" "p*" RETURN (CHILDREN)',
    b"DELETE p",
]
_LIST_EXTENDED_WANTED = re.compile(rb"^\* (LIST|STATUS)\b")
DELIBERATE_LIST_EXTENDED: dict[str, str] = {
    'LIST "" ()': "an empty pattern list is BAD (RFC 5258 'patterns' has one or more); "
    "Dovecot answers OK",
    'LIST "" "p*" RETURN (CHILDREN)': (
        "a deleted folder's children stay and it is a level above them (\\NonExistent); "
        "Dovecot still lists it as a folder"
    ),
    'CREATE "Bücher"': "NO [NOPERM] for a name no folder may have; Dovecot's NO has no code",
    'CREATE "&Jjo"': "NO [NOPERM] for a name no folder may have; Dovecot's NO has no code",
    "DELETE p": (
        "a second DELETE of a level that is no folder but has folders below is NO "
        "[HASCHILDREN] (RFC 9051 7.1); Dovecot still has the folder and deletes it again"
    ),
}


async def test_searchres_as_dovecot(stack: Stack, dovecot: int) -> None:  # noqa: F811
    """SEARCH RETURN (SAVE) and ``$`` next to Dovecot: the same messages saved, used, kept
    and forgotten, and the same BADs (#13, RFC 5182)."""
    await stack.add_account("alice")
    for i, content in enumerate(MESSAGES):
        await stack.deliver("alice", content, i)
    script, wanted = SEARCHRES_SCRIPT, _SEARCHRES_WANTED
    theirs = await asyncio.to_thread(raw_transcript, dovecot, "alice", script, wanted)
    ours = await asyncio.to_thread(
        raw_transcript, stack.port(), f"alice@{stack.domain}", script, wanted
    )
    differences = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert not differences, "\n".join(
        f"{k}:\n  imapd   {o!r}\n  dovecot {t!r}" for k, (o, t) in differences.items()
    )


async def test_list_extended_as_dovecot(stack: Stack, dovecot: int) -> None:  # noqa: F811
    """LIST-EXTENDED next to Dovecot: the same names, attributes and CHILDINFO for the same
    options and pattern lists (#13, RFC 5258)."""
    await stack.add_account("alice")
    script, wanted = LIST_EXTENDED_SCRIPT, _LIST_EXTENDED_WANTED
    theirs = await asyncio.to_thread(raw_transcript, dovecot, "alice", script, wanted)
    ours = await asyncio.to_thread(
        raw_transcript, stack.port(), f"alice@{stack.domain}", script, wanted
    )
    differences = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    stale = [k for k in DELIBERATE_LIST_EXTENDED if k not in differences]
    assert not stale, f"no longer different from Dovecot, remove: {stale}"
    unexplained = {k: v for k, v in differences.items() if k not in DELIBERATE_LIST_EXTENDED}
    assert not unexplained, "\n".join(
        f"{k}:\n  imapd   {o!r}\n  dovecot {t!r}" for k, (o, t) in unexplained.items()
    )
