"""Real IMAP clients from Debian against ``qmesh up`` over TLS (#13): isync's ``mbsync`` and
``offlineimap`` keep a local Maildir and the account in step, both ways, with nothing lost or
duplicated.

One scenario per client: the first sync pulls INBOX and another folder; flags set locally
(seen, flagged), a message moved between local folders, a local deletion and a new local folder
reach the server; a delivery through smtpd and local, an APPEND, a flag and an expunge made on
the server reach the Maildir; and a sync with nothing changed changes nothing on either side (no
duplicates, no re-downloads). The server is checked with ``imaplib``, never through the client.
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
def site(tmp_path: Path) -> Iterator[Site]:
    cert, key = self_signed(tmp_path / "tls", HOST)
    controls = {
        "me": "mx.example.test",
        "locals": "mx.example.test",
        "rcpthosts": "mx.example.test",
        "tlscert": str(cert),
        "tlskey": str(key),
    }
    cluster = start_cluster(tmp_path / "site", controls)
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


def ok(result: tuple[str, list[object]]) -> list[object]:
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


FETCHED = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)")


def server_folder(client: imaplib.IMAP4, name: str) -> dict[int, tuple[str, frozenset[str]]]:
    """UID -> (subject, flags) of one folder, read without changing \\Seen."""
    ok(client.select(name, readonly=True))
    data = ok(client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    found: dict[int, tuple[str, frozenset[str]]] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        match = FETCHED.search(item[0])
        assert match is not None, item
        subject = item[1].decode().partition(":")[2].strip()
        flags = frozenset(match.group(2).decode().split()) - {"\\Recent"}
        found[int(match.group(1))] = (subject, flags)
    return found


def server_folders(site: Site) -> dict[str, dict[int, tuple[str, frozenset[str]]]]:
    with imap(site) as client:
        names = []
        for line in ok(client.list()):
            assert isinstance(line, bytes)
            names.append(line.rsplit(b" ", 1)[1].strip(b'"').decode())
        return {name: server_folder(client, name) for name in sorted(names)}


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
    message = f"From: bob@far.test\r\nSubject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@far.test>\r\n\r\nbody of {subject}\r\n"
    ok(client.append(folder, f"({flags})" if flags else None, None, message.encode()))


def uid_of(client: imaplib.IMAP4, folder: str, subject: str) -> int:
    ok(client.select(folder))
    (uid,) = (u for u, (s, _) in server_folder(client, folder).items() if s == subject)
    ok(client.select(folder))  # read-write again after server_folder's EXAMINE
    return uid


# --- the local Maildir ----------------------------------------------------------------------

MAILDIR_FLAGS = {"S": "\\Seen", "F": "\\Flagged", "R": "\\Answered", "T": "\\Deleted", "D": "\\Draft"}


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
        folder.name: tuple(p.name for p in local_files(folder))
        for folder in sorted(root.iterdir())
        if folder.joinpath("cur").is_dir()
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


def mbsync_sync(site: Site, work: Path, root: Path) -> Callable[[], str]:
    program = client_program("mbsync")
    config = work / "mbsyncrc"
    config.write_text(
        f"""IMAPAccount qmesh
Host {HOST}
Port {site.imap_port}
User {USER}
Pass {PASSWORD}
SSLType STARTTLS
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
        done = subprocess.run(
            [program, "-c", str(config), "-V", "qmesh"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    return sync


def offlineimap_sync(site: Site, work: Path, root: Path) -> Callable[[], str]:
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
remoteport = {site.imaps_port}
ssl = yes
sslcacertfile = {site.cert}
remoteuser = {USER}
remotepass = {PASSWORD}
maxconnections = 1
"""
    )

    def sync() -> str:
        done = subprocess.run(
            [program, "-c", str(config), "-o", "-u", "basic"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        output = done.stdout + done.stderr
        # offlineimap reports errors of single folders and messages, yet exits 0
        assert done.returncode == 0 and "ERROR" not in output, output
        return output

    return sync


CLIENTS = {"mbsync": mbsync_sync, "offlineimap": offlineimap_sync}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_syncs_both_ways_and_loses_nothing(client: str, site: Site, tmp_path: Path) -> None:
    root = tmp_path / "Mail"
    root.mkdir()
    sync = CLIENTS[client](site, tmp_path, root)

    # On the server: three deliveries through smtpd and local, a folder with two messages.
    deliver(site, "in1", "in2", "in3")
    wait_for(lambda: inbox_subjects(site) == ["in1", "in2", "in3"], what="three deliveries")
    with imap(site) as c:
        ok(c.create("Lists"))
        append(c, "Lists", "l1", "\\Seen")
        append(c, "Lists", "l2")

    # The first sync pulls everything.
    sync()
    assert local_folder(root / "INBOX") == Counter(
        {("in1", frozenset()): 1, ("in2", frozenset()): 1, ("in3", frozenset()): 1}
    )
    assert local_folder(root / "Lists") == Counter(
        {("l1", frozenset({"\\Seen"})): 1, ("l2", frozenset()): 1}
    )
    assert_quiet(sync, site, root)

    # Local changes: flags, a move, a deletion, a new folder with two messages.
    set_local_flags(root / "INBOX", "in1", "S")
    set_local_flags(root / "INBOX", "in2", "FS")
    move_local(root / "INBOX", root / "Lists", "in3")
    find(root / "Lists", "l2").unlink()
    projects = make_local_folder(root, "Projects")
    new_local_message(projects, b"From: alice@mx.example.test\nSubject: p1\n\nplan\n")
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
    assert_quiet(sync, site, root)

    # Server changes: a delivery, an APPEND, a flag and an expunge, all by others.
    deliver(site, "in4")
    wait_for(lambda: "in4" in inbox_subjects(site), what="the fourth delivery")
    with imap(site) as c:
        append(c, "Lists", "l3")
        ok(c.uid("STORE", str(uid_of(c, "Lists", "l1")), "+FLAGS", "(\\Flagged)"))
        ok(c.uid("STORE", str(uid_of(c, "INBOX", "in1")), "+FLAGS", "(\\Deleted)"))
        ok(c.expunge())
    sync()

    assert local_folder(root / "INBOX") == Counter(
        {("in2", frozenset({"\\Seen", "\\Flagged"})): 1, ("in4", frozenset()): 1}
    )
    assert local_folder(root / "Lists") == Counter(
        {("l1", frozenset({"\\Seen", "\\Flagged"})): 1, ("in3", frozenset()): 1,
         ("l3", frozenset()): 1}
    )  # fmt: skip
    assert local_folder(root / "Projects") == Counter(
        {("p1", frozenset()): 1, ("p2", frozenset({"\\Seen"})): 1}
    )
    server = server_folders(site)
    for name in ("INBOX", "Lists", "Projects"):
        assert as_folder(server[name]) == local_folder(root / name), name
    assert_quiet(sync, site, root)


def assert_quiet(sync: Callable[[], str], site: Site, root: Path) -> None:
    """A sync with nothing changed leaves every local file name and every server UID alone."""
    before_local, before_server = local_state(root), server_folders(site)
    sync()
    assert local_state(root) == before_local
    assert server_folders(site) == before_server
