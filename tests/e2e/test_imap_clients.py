"""Real IMAP clients from Debian against ``qmesh up`` over TLS (#13): isync's ``mbsync`` and
``offlineimap`` keep a local Maildir and the account in step, both ways, with nothing lost or
duplicated.

One scenario per client: the first sync pulls INBOX, another folder and a folder below a
folder; flags set and cleared locally (seen, flagged, answered), a message moved between local
folders, a local deletion and a new local folder with 8-bit text reach the server; a delivery
through smtpd and local, an APPEND, flags set and cleared, an expunge and a MOVE made on the
server reach the Maildir; and a sync with nothing changed changes nothing on either side (no
duplicates, no re-downloads). mbsync runs over STARTTLS and over implicit TLS, offlineimap over
implicit TLS (its STARTTLS checks no certificate), each trusting only the site's certificate;
the store is SeaweedFS or files. The server is checked with ``imaplib``, never through the
client, and imapd must have logged nothing above info.

A local folder whose name is not modified UTF-7 (isync 1.4 sends UTF-8 as it is) is refused
with NO as Dovecot refuses it, and mbsync syncs every other folder.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import smtplib
import ssl
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, client_program, start_cluster
from tests.e2e.test_mail_flow import wait_for
from tests.servers import self_signed

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice@mx.example.test", "alice-pw"
# offlineimap matches the certificate's name itself, against the host it was told to reach
HOST = "localhost"

# What a folder holds, as a client sees it: one (subject, flags) per message, in any order.
Folder = Counter[tuple[str, frozenset[str]]]


@dataclass
class Site:
    cluster: Cluster
    cert: Path

    @property
    def imap_port(self) -> int:
        return int(self.cluster.env["QMESH_IMAP_PORT"])

    @property
    def imaps_port(self) -> int:
        return int(self.cluster.env["QMESH_IMAPS_PORT"])


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """``qmesh up`` on the store ``request.param`` names (``file`` or ``s3``, SeaweedFS)."""
    s3 = request.getfixturevalue("s3_server") if request.param == "s3" else None
    cert, key = self_signed(tmp_path / "tls", HOST)
    controls = {
        "me": "mx.example.test",
        "locals": "mx.example.test",
        "rcpthosts": "mx.example.test",
        "tlscert": str(cert),
        "tlskey": str(key),
    }
    cluster = start_cluster(tmp_path / "site", controls, s3=s3)
    try:
        add = cluster.cli("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        assert add.returncode == 0, add.stderr
        yield Site(cluster, cert)
    finally:
        cluster.stop()


# --- the server, seen through imaplib -------------------------------------------------------


@contextlib.contextmanager
def imap(site: Site) -> Iterator[imaplib.IMAP4_SSL]:
    context = ssl.create_default_context(cafile=str(site.cert))
    context.check_hostname = False  # the test certificate names the host only in its CN
    client = imaplib.IMAP4_SSL("127.0.0.1", site.imaps_port, ssl_context=context, timeout=30)
    try:
        client.login(USER, PASSWORD)
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def ok(result: tuple[str, list[Any]]) -> list[Any]:
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


UID, FLAGS = re.compile(rb"\bUID (\d+)"), re.compile(rb"\bFLAGS \(([^)]*)\)")


def server_folder(client: imaplib.IMAP4, name: str) -> dict[int, tuple[str, frozenset[str]]]:
    """UID -> (subject, flags) of one folder, read without changing \\Seen."""
    ok(client.select(name, readonly=True))
    data = ok(client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    found: dict[int, tuple[str, frozenset[str]]] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        uid, flags = UID.search(item[0]), FLAGS.search(item[0])
        assert uid is not None and flags is not None, item
        subject = item[1].decode().partition(":")[2].strip()
        found[int(uid.group(1))] = (
            subject,
            frozenset(flags.group(1).decode().split()) - {"\\Recent"},
        )
    return found


LISTED = re.compile(rb'\([^)]*\) (?:"."|NIL) "?(.*?)"?')


def server_folders(site: Site) -> dict[str, dict[int, tuple[str, frozenset[str]]]]:
    with imap(site) as client:
        names = []
        for line in ok(client.list()):
            assert isinstance(line, bytes), line
            match = LISTED.fullmatch(line)
            assert match is not None, line
            names.append(match.group(1).decode())
        return {name: server_folder(client, f'"{name}"') for name in sorted(names)}


def as_folder(uids: dict[int, tuple[str, frozenset[str]]]) -> Folder:
    return Counter(uids.values())


def deliver(site: Site, *subjects: str) -> None:
    """Through smtpd and local, as the world sends mail."""
    with smtplib.SMTP("127.0.0.1", site.cluster.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        for subject in subjects:
            body = f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@far.test>\r\n\r\nhi\r\n"
            smtp.sendmail("joe@far.test", [USER], body.encode())


def inbox_subjects(site: Site) -> list[str]:
    with imap(site) as client:
        return sorted(s for s, _ in server_folder(client, "INBOX").values())


def append(client: imaplib.IMAP4, folder: str, subject: str, flags: str = "") -> None:
    message = (
        f"From: bob@far.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@far.test>\r\n\r\nbody of {subject}\r\n"
    )
    ok(client.append(folder, f"({flags})" if flags else None, None, message.encode()))


def uid_of(client: imaplib.IMAP4, folder: str, subject: str) -> int:
    ok(client.select(folder))
    (uid,) = (u for u, (s, _) in server_folder(client, folder).items() if s == subject)
    ok(client.select(folder))  # read-write again after server_folder's EXAMINE
    return uid


# --- the local Maildir ----------------------------------------------------------------------

MAILDIR_FLAGS = {
    "S": "\\Seen",
    "F": "\\Flagged",
    "R": "\\Answered",
    "T": "\\Deleted",
    "D": "\\Draft",
}


def subject_of(path: Path) -> str:
    for line in path.read_bytes().splitlines():
        if line.lower().startswith(b"subject:"):
            return line.partition(b":")[2].strip().decode()
    raise AssertionError(f"no Subject in {path}")


def local_files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("new", "cur") for p in folder.joinpath(sub).iterdir())


def local_folder(folder: Path) -> Folder:
    found: Folder = Counter()
    for path in local_files(folder):
        info = path.name.partition(":2,")[2]
        flags = frozenset(MAILDIR_FLAGS[c] for c in info if c in MAILDIR_FLAGS)
        found[(subject_of(path), flags)] += 1
    return found


def local_state(root: Path) -> dict[str, tuple[str, ...]]:
    """Every file name of every local folder: a re-download or a duplicate changes it."""
    return {
        str(folder.parent.relative_to(root)): tuple(p.name for p in local_files(folder.parent))
        for folder in sorted(root.rglob("cur"))
    }


def find(folder: Path, subject: str) -> Path:
    (path,) = (p for p in local_files(folder) if subject_of(p) == subject)
    return path


def set_local_flags(folder: Path, subject: str, letters: str) -> None:
    """What a mail reader does: move the file to cur/ with the flags after ``:2,``."""
    path = find(folder, subject)
    base = path.name.partition(":2,")[0]
    path.rename(folder / "cur" / f"{base}:2,{letters}")


def new_local_message(folder: Path, content: bytes, letters: str = "") -> None:
    name = f"1765000000.{uuid.uuid4().hex}.client"
    if letters:
        folder.joinpath("cur", f"{name}:2,{letters}").write_bytes(content)
    else:
        folder.joinpath("new", name).write_bytes(content)


def move_local(source: Path, target: Path, subject: str) -> None:
    """A mail reader's move between folders: a new file in the target, the old one gone."""
    path = find(source, subject)
    new_local_message(target, path.read_bytes(), path.name.partition(":2,")[2])
    path.unlink()


def make_local_folder(root: Path, name: str) -> Path:
    folder = root / name
    for sub in ("cur", "new", "tmp"):
        folder.joinpath(sub).mkdir(parents=True)
    return folder


# --- the clients ----------------------------------------------------------------------------


@dataclass
class Client:
    sync: Callable[[], str]
    separator: str  # what stands for the IMAP hierarchy delimiter in local folder paths

    def __call__(self) -> str:
        return self.sync()


def mbsync(site: Site, work: Path, root: Path, tls: str) -> Client:
    program = client_program("mbsync")
    config = work / "mbsyncrc"
    port = site.imaps_port if tls == "implicit" else site.imap_port
    config.write_text(
        f"""IMAPAccount qmesh
Host {HOST}
Port {port}
User {USER}
Pass {PASSWORD}
SSLType {"IMAPS" if tls == "implicit" else "STARTTLS"}
CertificateFile {site.cert}
Timeout 30

IMAPStore qmesh-remote
Account qmesh

MaildirStore qmesh-local
Path {root}/
Inbox {root}/INBOX
SubFolders Verbatim

Channel qmesh
Far :qmesh-remote:
Near :qmesh-local:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
"""
    )

    def sync() -> str:
        done = run_mbsync(program, config)
        output = done.stdout + done.stderr
        # mbsync warns (and exits 0) when it cannot tell which UID an upload got
        assert done.returncode == 0 and "Warning" not in output, output
        return output

    return Client(sync, "/")  # SubFolders Verbatim


def run_mbsync(program: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program, "-c", str(config), "-V", "qmesh"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def offlineimap(site: Site, work: Path, root: Path, tls: str) -> Client:
    program = client_program("offlineimap")
    config = work / "offlineimaprc"
    config.write_text(
        f"""[general]
accounts = qmesh
metadata = {work / "offlineimap-meta"}
ui = basic

[Account qmesh]
localrepository = qmesh-local
remoterepository = qmesh-remote

[Repository qmesh-local]
type = Maildir
localfolders = {root}

[Repository qmesh-remote]
type = IMAP
remotehost = {HOST}
remoteport = {site.imaps_port if tls == "implicit" else site.imap_port}
ssl = {"yes" if tls == "implicit" else "no"}
starttls = {"no" if tls == "implicit" else "yes"}
sslcacertfile = {site.cert}
remoteuser = {USER}
remotepass = {PASSWORD}
maxconnections = 1
"""
    )

    log = work / "offlineimap.log"

    def sync() -> str:
        log.unlink(missing_ok=True)
        done = subprocess.run(
            [program, "-c", str(config), "-o", "-u", "basic", "-l", str(log)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        # offlineimap logs errors of single folders and messages, and warnings, yet exits 0
        levels = re.findall(r" (WARNING|ERROR|CRITICAL): ", log.read_text())
        assert levels == [], log.read_text()
        return output

    return Client(sync, ".")  # a Maildir repository's default sep


CLIENTS = {"mbsync": mbsync, "offlineimap": offlineimap}
# offlineimap checks the certificate only on implicit TLS: its STARTTLS passes no CA to imaplib2
CASES = [
    ("mbsync", "starttls", "s3"),
    ("mbsync", "implicit", "file"),
    ("offlineimap", "implicit", "s3"),
]
# 8-bit text as mail readers save it: uploaded and kept byte for byte
PROJECT_NOTES = (
    "From: Jörg <alice@mx.example.test>\nSubject: p1\nDate: Tue, 2 Dec 2025 09:00:00 +0000\n"
    "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    "Plan für Köln\n"
).encode()


@pytest.mark.parametrize(("client", "tls", "site"), CASES, indirect=["site"])
def test_client_syncs_both_ways_and_loses_nothing(
    client: str, tls: str, site: Site, tmp_path: Path
) -> None:
    root = tmp_path / "Mail"
    root.mkdir()
    sync = CLIENTS[client](site, tmp_path, root, tls)
    archive = root / f"Archive{sync.separator}2025"

    # On the server: three deliveries through smtpd and local, a folder with two messages and
    # a folder below another.
    deliver(site, "in1", "in2", "in3")
    wait_for(lambda: inbox_subjects(site) == ["in1", "in2", "in3"], what="three deliveries")
    with imap(site) as c:
        ok(c.create("Lists"))
        append(c, "Lists", "l1", "\\Seen")
        append(c, "Lists", "l2")
        ok(c.create("Archive.2025"))
        append(c, "Archive.2025", "a1", "\\Seen \\Answered")

    # The first sync pulls everything.
    output = sync()
    if client == "mbsync" and tls == "starttls":
        assert "Connection is now encrypted" in output
    assert local_folder(root / "INBOX") == Counter(
        {("in1", frozenset()): 1, ("in2", frozenset()): 1, ("in3", frozenset()): 1}
    )
    assert local_folder(root / "Lists") == Counter(
        {("l1", frozenset({"\\Seen"})): 1, ("l2", frozenset()): 1}
    )
    assert local_folder(archive) == Counter({("a1", frozenset({"\\Seen", "\\Answered"})): 1})
    assert_quiet(sync, site, root)

    # Local changes: flags set and cleared, a move, a deletion, a new folder with two messages.
    set_local_flags(root / "INBOX", "in1", "S")
    set_local_flags(root / "INBOX", "in2", "FS")
    set_local_flags(archive, "a1", "R")
    moved = find(root / "INBOX", "in3").read_bytes()
    move_local(root / "INBOX", root / "Lists", "in3")
    find(root / "Lists", "l2").unlink()
    projects = make_local_folder(root, "Projects")
    new_local_message(projects, PROJECT_NOTES)
    new_local_message(projects, b"From: alice@mx.example.test\nSubject: p2\n\ndone\n", "S")
    sync()

    server = server_folders(site)
    assert as_folder(server["INBOX"]) == Counter(
        {("in1", frozenset({"\\Seen"})): 1, ("in2", frozenset({"\\Seen", "\\Flagged"})): 1}
    )  # in3 expunged, not merely \Deleted
    assert as_folder(server["Lists"]) == Counter(
        {("l1", frozenset({"\\Seen"})): 1, ("in3", frozenset()): 1}
    )
    assert as_folder(server["Projects"]) == Counter(
        {("p1", frozenset()): 1, ("p2", frozenset({"\\Seen"})): 1}
    )
    assert as_folder(server["Archive.2025"]) == Counter({("a1", frozenset({"\\Answered"})): 1})
    # uploaded as they are: no X-OfflineIMAP header (offlineimap adds one to find the UID when
    # a server lacks UIDPLUS); mbsync puts its X-TUID into every message it copies, either way
    with imap(site) as c:
        assert server_body(c, "Lists", "in3") == crlf(moved)
        assert server_body(c, "Projects", "p1") == crlf(PROJECT_NOTES)
    assert_quiet(sync, site, root)

    # Server changes: a delivery, an APPEND, flags, an expunge and a move, all by others.
    deliver(site, "in4")
    wait_for(lambda: "in4" in inbox_subjects(site), what="the fourth delivery")
    with imap(site) as c:
        append(c, "Lists", "l3")
        ok(c.uid("STORE", str(uid_of(c, "Lists", "l1")), "+FLAGS", "(\\Flagged)"))
        ok(c.uid("STORE", str(uid_of(c, "Lists", "l1")), "-FLAGS", "(\\Seen)"))
        ok(c.uid("MOVE", str(uid_of(c, "INBOX", "in2")), "Archive.2025"))
        ok(c.uid("STORE", str(uid_of(c, "INBOX", "in1")), "+FLAGS", "(\\Deleted)"))
        ok(c.expunge())
    sync()

    assert local_folder(root / "INBOX") == Counter({("in4", frozenset()): 1})
    assert local_folder(root / "Lists") == Counter(
        {("l1", frozenset({"\\Flagged"})): 1, ("in3", frozenset()): 1, ("l3", frozenset()): 1}
    )
    assert local_folder(archive) == Counter(
        {("a1", frozenset({"\\Answered"})): 1, ("in2", frozenset({"\\Seen", "\\Flagged"})): 1}
    )
    assert local_folder(root / "Projects") == Counter(
        {("p1", frozenset()): 1, ("p2", frozenset({"\\Seen"})): 1}
    )
    server = server_folders(site)
    for name in ("INBOX", "Lists", "Projects"):
        assert as_folder(server[name]) == local_folder(root / name), name
    assert as_folder(server["Archive.2025"]) == local_folder(archive)
    assert_quiet(sync, site, root)

    # imapd saw nothing it had to warn about
    troubles = [line for line in site.cluster.log_lines("imapd") if line.get("level") != "info"]
    assert troubles == []


@pytest.mark.parametrize("site", ["file"], indirect=True)
def test_mbsync_goes_past_a_folder_name_that_is_not_modified_utf7(
    site: Site, tmp_path: Path
) -> None:
    """isync 1.4 sends a local folder's UTF-8 name as it is. imapd refuses it with NO, as
    Dovecot does, and mbsync reports that one folder and syncs every other (on BAD it gave up
    the whole run: nothing after ``Bücher`` reached the server)."""
    root = tmp_path / "Mail"
    root.mkdir()
    mbsync(site, tmp_path, root, "implicit").sync()  # INBOX and the special folders
    new_local_message(make_local_folder(root, "Bücher"), b"Subject: b1\n\nread\n")
    new_local_message(make_local_folder(root, "Zettel"), b"Subject: z1\n\nnote\n")
    new_local_message(root / "INBOX", b"Subject: i1\n\nhello\n", "F")

    done = run_mbsync(client_program("mbsync"), tmp_path / "mbsyncrc")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "returned an error: NO [NOPERM] Mailbox name is not valid mUTF-7" in output, output
    server = server_folders(site)
    assert as_folder(server["Zettel"]) == Counter({("z1", frozenset()): 1})
    assert as_folder(server["INBOX"]) == Counter({("i1", frozenset({"\\Flagged"})): 1})
    assert not any("cher" in name for name in server)


def assert_quiet(sync: Callable[[], str], site: Site, root: Path) -> None:
    """A sync with nothing changed leaves every local file name and every server UID alone."""
    before_local, before_server = local_state(root), server_folders(site)
    sync()
    assert local_state(root) == before_local
    assert server_folders(site) == before_server


def crlf(message: bytes) -> bytes:
    """``message`` with CRLF line ends and without mbsync's X-TUID header."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    return b"\r\n".join(line for line in lines if not line.startswith(b"X-TUID: "))


def server_body(client: imaplib.IMAP4, folder: str, subject: str) -> bytes:
    uid = uid_of(client, folder, subject)
    data = ok(client.uid("FETCH", str(uid), "(BODY.PEEK[])"))
    (item,) = (i for i in data if isinstance(i, tuple))
    assert isinstance(item[1], bytes)
    return crlf(item[1])
