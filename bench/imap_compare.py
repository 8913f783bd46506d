"""imapd next to Dovecot on one large mailbox (#13): SELECT, UID FETCH 1:* (FLAGS), a SEARCH on
a header, and how long an IDLE client waits to hear of a delivery.

    .venv/bin/python -m bench.imap_compare [--messages 10000] [--rounds 3] [--sessions 6]

Both servers run on this machine over the same messages: imapd on a real nats-server and the
directory store, Dovecot (Debian's dovecot-imapd, deploy/ci/system-packages.sh) over a
Maildir. Figures are wall-clock seconds of the client (Python's imaplib), medians of the
rounds; run on a quiet machine. Needs root for Dovecot (its mail user). ``--sessions N`` also
reports what each of N further imapd sessions of the folder adds to the process (tracemalloc).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import imaplib
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import nats

from qmesh.bus.provision import consumer_specs, provision
from qmesh.cli.natsd import start_nats_server
from qmesh.contract.ids import new_queue_id
from qmesh.control import load_controls
from qmesh.directory.passwords import hash_password
from qmesh.directory.records import AccountRecord, DomainRecord
from qmesh.directory.store import Directory
from qmesh.mailbox.names import announce_subject
from qmesh.runtime.service import start
from qmesh.runtime.settings import Settings
from qmesh.store.files import FileStore
from qmesh.store.keys import mailbox_key
from qmesh.store.maildir import pop3_size, unique_name
from services.imapd.app import build
from services.imapd.server import ImapServer
from tests.servers import free_ports

DOMAIN = "bench.test"
PASSWORD = "bench-password"


def message(i: int) -> bytes:
    return (
        f"From: sender{i % 50}@example.test\nTo: bench@{DOMAIN}\nSubject: message {i}\n"
        f"Message-ID: <{i}@example.test>\n\n" + "body line\n" * 20
    ).encode()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(port: int, user: str, deliver: Callable[[int], None], n: int) -> dict[str, float]:
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(user, PASSWORD)
    out = {"SELECT": timed(lambda: imap.select("INBOX"))}
    out["UID FETCH 1:* (FLAGS)"] = timed(lambda: imap.uid("FETCH", "1:*", "(FLAGS)"))
    out["SEARCH HEADER Subject"] = timed(
        lambda: imap.uid("SEARCH", "HEADER", "Subject", f'"message {n // 2}"')
    )
    imap.send(b"i1 IDLE\r\n")
    assert imap.readline().startswith(b"+")
    started = time.perf_counter()
    deliver(n)
    while b"EXISTS" not in imap.readline():
        pass
    out["IDLE notification"] = time.perf_counter() - started
    imap.send(b"DONE\r\n")
    while not imap.readline().startswith(b"i1 "):
        pass
    imap.logout()
    return out


def per_session(port: int, user: str, traced: Callable[[], int], sessions: int) -> float:
    """Octets the imapd process holds for each further session that has selected the folder
    and fetched its flags (what is shared by the replica is allocated by the first one)."""
    first = imaplib.IMAP4("127.0.0.1", port)
    first.login(user, PASSWORD)
    first.select("INBOX")
    first.uid("FETCH", "1:*", "(FLAGS)")
    before = traced()
    opened = []
    for _ in range(sessions):
        imap = imaplib.IMAP4("127.0.0.1", port)
        imap.login(user, PASSWORD)
        imap.select("INBOX")
        imap.uid("FETCH", "1:*", "(FLAGS)")
        imap.noop()
        opened.append(imap)
    grown = traced() - before
    for imap in [first, *opened]:
        imap.logout()
    return grown / sessions


def dovecot(base: Path, n: int) -> tuple[subprocess.Popen[bytes], int]:
    maildir = base / "mail/bench/Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for i in range(n):
        content = message(i)
        (maildir / "new" / f"{1764583200 + i}.M{i}P1.bench,W={pop3_size(content)}").write_bytes(
            content
        )
    (base / "passwd").write_text(f"bench:{{PLAIN}}{PASSWORD}\n")
    subprocess.run(["chown", "-R", "nobody:nogroup", str(base / "mail")], check=True)
    (port,) = free_ports(1)
    conf = base / "dovecot.conf"
    conf.write_text(
        f"protocols = imap\nlisten = 127.0.0.1\nbase_dir = {base}/run\nstate_dir = {base}/state\n"
        f"log_path = {base}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\n"
        f"mail_location = maildir:{base}/mail/%n/Maildir\n"
        f"passdb {{\n driver = passwd-file\n"
        f" args = scheme=PLAIN username_format=%n {base}/passwd\n}}\n"
        f"userdb {{\n driver = static\n args = uid=nobody gid=nogroup home={base}/mail/%n\n}}\n"
        f"service imap-login {{\n inet_listener imap {{\n port = {port}\n }}\n"
        f" inet_listener imaps {{\n port = 0\n }}\n chroot =\n}}\nservice anvil {{\n chroot =\n}}\n"
    )
    proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", str(conf)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, port


async def qmesh(
    base: Path, n: int, rounds: int, sessions: int = 0
) -> tuple[list[dict[str, float]], float | None]:
    server = start_nats_server(base / "nats")
    nc = await nats.connect(server.url)
    control = base / "control"
    control.mkdir()
    await provision(nc.jetstream(), consumer_specs(load_controls(control, {})))
    (control / "me").write_text(f"{DOMAIN}\n")
    (control / "locals").write_text(f"{DOMAIN}\n")
    settings = Settings(
        nats_url=server.url,
        control=control,
        store=f"file://{base / 'store'}",
        mail_bucket="mail",
        listen_host="127.0.0.1",
        http_host="127.0.0.1",
        http_port=0,
        imap_port=0,
        imaps_port=0,
    )
    directory = await Directory.open(nc.jetstream())
    with __import__("contextlib").suppress(Exception):
        await directory.create_domain(DomainRecord(name=DOMAIN))
    verifier = hash_password(PASSWORD)
    await directory.create_account(AccountRecord(domain=DOMAIN, name="bench", verifier=verifier))
    store = FileStore(base / "store", "mail")

    async def put(i: int) -> None:
        content = message(i)
        qid = new_queue_id(now=1_764_583_200 + i)
        name = unique_name(qid, 0, 0, content)
        await store.put(mailbox_key(DOMAIN, "bench", "INBOX", "new", name), content)

    for start_at in range(0, n, 200):
        await asyncio.gather(*(put(i) for i in range(start_at, min(n, start_at + 200))))
    running = await start(await build(settings), settings)
    port = next(c for c in running.service.components if isinstance(c, ImapServer)).ports["imap"]
    loop = asyncio.get_running_loop()

    def deliver(i: int) -> None:
        async def both() -> None:
            await put(i)
            await nc.publish(announce_subject(DOMAIN, "bench"), b"")
            await nc.flush()

        asyncio.run_coroutine_threadsafe(both(), loop).result()

    await asyncio.sleep(1)
    results = []
    for r in range(rounds):
        results.append(await asyncio.to_thread(measure, port, f"bench@{DOMAIN}", deliver, n + r))
    memory = None
    if sessions:

        def traced() -> int:
            async def now() -> int:
                gc.collect()
                return tracemalloc.get_traced_memory()[0]

            return asyncio.run_coroutine_threadsafe(now(), loop).result()

        tracemalloc.start()
        memory = await asyncio.to_thread(per_session, port, f"bench@{DOMAIN}", traced, sessions)
        tracemalloc.stop()
    await running.stop()
    await nc.close()
    server.stop()
    return results, memory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sessions", type=int, default=0, help="also measure imapd's memory per session"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="qmesh-imap-bench-"))
    os.chmod(base, 0o755)
    try:
        ours, memory = asyncio.run(qmesh(base / "qmesh", args.messages, args.rounds, args.sessions))
        proc, port = dovecot(base / "dovecot", args.messages)
        maildir = base / "dovecot/mail/bench/Maildir/new"

        def deliver(i: int) -> None:
            content = message(i)
            path = maildir / f"{1764583200 + i}.M{i}P1.bench,W={pop3_size(content)}"
            path.write_bytes(content)
            shutil.chown(path, "nobody", "nogroup")

        theirs = [measure(port, "bench", deliver, args.messages + r) for r in range(args.rounds)]
        proc.terminate()
        proc.wait(20)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{args.messages} messages, median of {args.rounds} rounds (seconds)")  # noqa: T201
    print("| operation | imapd | Dovecot | ratio |")  # noqa: T201
    print("|---|---|---|---|")  # noqa: T201
    for key in ours[0]:
        a = statistics.median(r[key] for r in ours)
        b = statistics.median(r[key] for r in theirs)
        print(f"| {key} | {a:.3f} | {b:.3f} | {a / b:.1f}x |")  # noqa: T201
    print(f"first SELECT (imapd assigns UIDs): {ours[0]['SELECT']:.3f} s")  # noqa: T201
    first = "SEARCH HEADER Subject"
    print(  # noqa: T201
        f"first {first} (headers read from the store): imapd {ours[0][first]:.3f} s,"
        f" Dovecot {theirs[0][first]:.3f} s"
    )
    if memory is not None:
        print(f"imapd memory per further session: {memory / 1e6:.2f} MB")  # noqa: T201


if __name__ == "__main__":
    main()
