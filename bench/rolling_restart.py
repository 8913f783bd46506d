"""Rolling restart under load, on the chart run as pods: nothing lost, nothing delivered twice.

    bash deploy/ci/pod-tier.sh rolling [MESSAGES]       # builds the image first; default 2000

The chart is rendered with the "dev" scenario plus two replicas of each queue service (send,
local, remote), `pop3plaintext` (to count the mailbox by POP3), `relayclients` 127.0.0.1 (the
load may relay) and `smtproutes` sending the domain `sink.test` to an SMTP sink of this script
on loopback. While MESSAGES messages (half to a local account, half to the sink) go in through
smtpd, each Deployment's pods are replaced one by one as a RollingUpdate with `maxSurge: 1,
maxUnavailable: 0` does it: start a new pod, wait for its /readyz, then stop an old one with
`podman kube down` (SIGTERM, then the pod's grace period). No drain step, no pause in the load.

A temporary SMTP failure is retried after a second, as a sending MTA would, and counted.
Then it waits until every accepted message is in the mailbox or the sink, and 35 s more (past
JetStream's 30 s ack wait, when a lost job would be redelivered), and prints: messages accepted,
time, lost (accepted, never delivered), duplicates (deliveries beyond one per message) and the
temporary failures retried.
Exit 1 when anything is lost or duplicated. A benchmark of correctness, not of speed.
"""

from __future__ import annotations

import argparse
import asyncio
import poplib
import smtplib
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "ci"))

# deploy/ci holds scripts, not a package that mypy reads (they run with the tier's own Python)
from pod_tier import PASSWORD, RELEASE, Tier, fail, say  # type: ignore[import-not-found]

QUEUE_SERVICES = ("send", "local", "remote")
SINK_DOMAIN = "sink.test"


class Sink:
    """An SMTP server on loopback that records the token in each message's Subject."""

    def __init__(self) -> None:
        self.tokens: Counter[str] = Counter()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self.serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self.session, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()
        self.loop.run_until_complete(server.wait_closed())

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 sink.test ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    body = []
                    while (data := await reader.readline()) not in (b".\r\n", b""):
                        body.append(data)
                    for data in body:
                        if data.startswith(b"Subject: roll "):
                            self.tokens[data.split()[2].decode()] += 1
                    writer.write(b"250 ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                elif verb in (b"EHLO", b"HELO"):
                    writer.write(b"250 sink.test\r\n")
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def send_load(
    port: int, user: str, messages: int, sessions: int, accepted: dict[str, str],
    temporary: list[str],
) -> None:  # fmt: skip
    """Send ``messages``; a temporary failure is retried after a second, as an MTA would (the
    reply goes into ``temporary``); a message still refused after five tries is not counted."""
    lock = threading.Lock()
    numbers = iter(range(messages))

    def session() -> None:
        smtp: smtplib.SMTP | None = None
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                break
            rcpt = user if n % 2 == 0 else f"rcpt{n % 10}@{SINK_DOMAIN}"
            token = uuid.uuid4().hex
            body = f"From: load@example.net\r\nTo: {rcpt}\r\nSubject: roll {token}\r\n\r\nn={n}\r\n"
            for _ in range(5):
                try:
                    if smtp is None:
                        smtp = smtplib.SMTP("127.0.0.1", port, timeout=60)
                        smtp.ehlo("load.example.net")
                    smtp.sendmail("load@example.net", [rcpt], body.encode())
                except (smtplib.SMTPException, OSError) as err:
                    with lock:
                        temporary.append(f"message {n}: {err!r}")
                    if smtp is not None:
                        smtp.close()
                    smtp = None
                    time.sleep(1)
                    continue
                with lock:
                    accepted[token] = rcpt
                break
            else:
                say(f"message {n} refused five times; not counted")
        if smtp is not None:
            smtp.quit()

    threads = [threading.Thread(target=session) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def roll(tier: Tier) -> list[str]:
    """Replace every pod of send, local and remote one by one (surge 1, unavailable 0)."""
    assert tier.adapter is not None
    adapter = tier.adapter
    events = []
    for service in QUEUE_SERVICES:
        deployment = f"{RELEASE}-{service}"
        old = [n for n, i in adapter.info.items() if i.get("deployment") == deployment]
        for pod in old:
            new = adapter.add_replica(deployment)
            adapter.write(tier.work / "pods")
            tier.play(tier.work / "pods" / "pods" / f"{new}.yaml")
            started = time.monotonic()
            tier.wait_http(
                f"http://127.0.0.1:{adapter.ports[new]['http']}/readyz",
                new,
                120,
                container=tier.container(new),
            )
            path = tier.work / "pods" / "pods" / f"{pod}.yaml"
            stopping = time.monotonic()
            tier.run_quiet("podman", "kube", "down", str(path))
            tier.played.remove(path)
            events.append(
                f"{new} ready in {stopping - started:.1f}s; {pod} stopped in "
                f"{time.monotonic() - stopping:.1f}s"
            )
            say(events[-1])
    return events


def mailbox(port: int, user: str) -> Counter[str]:
    found: Counter[str] = Counter()
    pop = poplib.POP3("127.0.0.1", port, timeout=60)
    try:
        pop.user(user)
        pop.pass_(PASSWORD)
        count, _ = pop.stat()
        for n in range(1, count + 1):
            for line in pop.top(n, 0)[1]:
                if line.startswith(b"Subject: roll "):
                    found[line.split()[2].decode()] += 1
        pop.quit()
    finally:
        pop.close()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--tools", type=Path, required=True)
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    import shutil

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    args.work.chmod(0o755)
    sink = Sink()
    values = args.work / "rolling-values.yaml"
    values.write_text(
        "send: {replicas: 2}\nlocal: {replicas: 2}\nremote: {replicas: 2}\n"
        "control:\n  pop3plaintext: '1'\n  relayclients: '127.0.0.1/32'\n"
        f"  smtproutes: '{SINK_DOMAIN}:127.0.0.1:{sink.port}'\n"
    )
    tier = Tier("dev", args.tools, args.venv.resolve(), args.image, args.work.resolve(), (values,))
    guide = tier.prepare()
    try:
        with tier.running():
            user = tier.stand_up(guide)
            assert tier.adapter is not None
            smtp_port = tier.adapter.ports[f"{RELEASE}-smtpd-0"]["smtp"]
            pop3_port = tier.adapter.ports[f"{RELEASE}-pop3d-0"]["pop3"]
            accepted: dict[str, str] = {}
            temporary: list[str] = []
            started = time.monotonic()
            load = threading.Thread(
                target=send_load,
                args=(smtp_port, user, args.messages, args.sessions, accepted, temporary),
            )
            load.start()
            time.sleep(3)  # the load is flowing before the first pod goes
            roll(tier)
            load.join()
            sent = time.monotonic() - started
            say(f"{len(accepted)} of {args.messages} messages accepted in {sent:.0f}s")
            for reply in temporary:
                say(f"temporary failure, retried: {reply}")
            deadline = time.monotonic() + 600
            while True:
                delivered = mailbox(pop3_port, user) + sink.tokens
                missing = set(accepted) - set(delivered)
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(5)
            done = time.monotonic() - started
            time.sleep(35)  # past the ack wait: a job handed back twice would show now
            delivered = mailbox(pop3_port, user) + sink.tokens
            lost = set(accepted) - set(delivered)
            duplicates = sum(c - 1 for t, c in delivered.items() if t in accepted and c > 1)
            strays = set(delivered) - set(accepted)
            say(
                f"ROLLING RESTART: {len(accepted)} messages accepted, counted after "
                f"{done:.0f}s; lost {len(lost)}, duplicates {duplicates}, "
                f"unexpected {len(strays)}; temporary SMTP failures retried {len(temporary)}"
            )
            if lost or duplicates:
                fail(f"rolling restart lost {len(lost)} and duplicated {duplicates} message(s)")
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
