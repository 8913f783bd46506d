"""Two ``send`` and two ``remote`` replicas on one NATS and one store (ARCHITECTURE 4, 7).

A ``qmesh up`` cluster runs one of each service; a second ``send`` and a second ``remote`` run
next to it with ``qmesh run``, as a second pod would. A few hundred messages with mixed fates
(accepted by the remote MX, refused by it with a 5xx, delivered locally) go in over several
SMTP sessions. Every delivery happens exactly once and every refused recipient comes back in
exactly one bounce, whichever replica did the work (ARCH-02, ARCH-03, ARCH-06).
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path

import pytest

from qmesh.store.header import read_body
from tests.e2e.cluster import Cluster, Replica, start_cluster, start_replica
from tests.e2e.conftest import Sink

pytestmark = pytest.mark.e2e

MESSAGES = 200
SESSIONS = 4
DOMAIN = "rep.test"
SENDERS = 2  # a0, a1: local accounts, so their bounces land in a mailbox
LOCALS = 3  # u0..u2
ACCEPTED = 3  # ok0..ok2 at the sink
REFUSED = 5  # bad0..bad4 at the sink, each answered 550
RELAY = ("127.0.0.2", 0)  # inside control/relayclients


def metric_total(text: str, name: str) -> float:
    """The sum of every sample of counter ``name`` in Prometheus text."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


# --- the mail: who gets what ------------------------------------------------------------------


def sender_of(k: int) -> str:
    return f"a{k // 4 % SENDERS}@{DOMAIN}"  # k // 4: every kind from every sender


def recipients_of(k: int) -> list[str]:
    """Kind k % 4: the sink accepts; the sink refuses; local; all three in one envelope."""
    ok, bad = f"ok{k % ACCEPTED}@sink.test", f"bad{k % REFUSED}@sink.test"
    local = f"u{k % LOCALS}@{DOMAIN}"
    return [[ok], [bad], [local], [ok, bad, local]][k % 4]


def expected() -> tuple[
    Counter[tuple[str, str]], Counter[tuple[str, str]], Counter[tuple[str, str]]
]:
    """(subject, recipient) at the sink; (account, subject) in local mailboxes; and
    (sender account, subject of the returned message) for each bounce."""
    sink: Counter[tuple[str, str]] = Counter()
    local: Counter[tuple[str, str]] = Counter()
    bounces: Counter[tuple[str, str]] = Counter()
    for k in range(MESSAGES):
        subject = f"r-{k}"
        for rcpt in recipients_of(k):
            if rcpt.startswith("ok"):
                sink[subject, rcpt] += 1
            elif rcpt.startswith("bad"):
                bounces[sender_of(k).split("@")[0], subject] += 1
            else:
                local[rcpt.split("@")[0], subject] += 1
    return sink, local, bounces


def send_session(
    cluster: Cluster, ks: range, accepted: list[int], errors: list[BaseException]
) -> None:
    try:
        with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=60, source_address=RELAY) as smtp:
            smtp.ehlo("client.rep.test")
            for k in ks:
                smtp.mail(sender_of(k))
                for rcpt in recipients_of(k):
                    code, reply = smtp.rcpt(rcpt)
                    assert code == 250, (rcpt, code, reply)
                body = f"Subject: r-{k}\r\nMessage-ID: <r-{k}@client.rep.test>\r\n\r\nbody {k}\r\n"
                code, reply = smtp.data(body.encode())
                assert code == 250, (k, code, reply)
                accepted.append(k)
    except BaseException as err:  # reported by the test, not lost in the thread
        errors.append(err)


# --- what arrived ----------------------------------------------------------------------------


SUBJECT = re.compile(rb"^Subject: (r-\d+)\r?$", re.M)


def mailbox_files(cluster: Cluster, account: str) -> list[Path]:
    root = cluster.data / "store" / "qmesh-mail" / DOMAIN / account / "INBOX" / "new"
    return sorted(root.glob("*")) if root.exists() else []


def at_sink(sink: Sink) -> Counter[tuple[str, str]]:
    got: Counter[tuple[str, str]] = Counter()
    for m in list(sink.messages):
        match = SUBJECT.search(m.data)
        subject = match.group(1).decode() if match else "?"
        for rcpt in m.recipients:
            got[subject, rcpt] += 1
    return got


def in_local_mailboxes(cluster: Cluster) -> Counter[tuple[str, str]]:
    got: Counter[tuple[str, str]] = Counter()
    for i in range(LOCALS):
        for f in mailbox_files(cluster, f"u{i}"):
            match = SUBJECT.search(read_body(f))
            got[f"u{i}", match.group(1).decode() if match else "?"] += 1
    return got


def bounces_received(cluster: Cluster) -> tuple[Counter[tuple[str, str]], list[str]]:
    """(account, subject of the returned message) per bounce, and every Final-Recipient."""
    got: Counter[tuple[str, str]] = Counter()
    final: list[str] = []
    for i in range(SENDERS):
        for f in mailbox_files(cluster, f"a{i}"):
            body = read_body(f)
            msg = email.message_from_bytes(body, policy=email.policy.default)
            assert msg["Subject"] == "failure notice", body[:500]
            parts = list(msg.walk())
            returned = [p for p in parts if p.get_content_type() == "message/rfc822"]
            assert len(returned) == 1
            original = returned[0].get_payload()
            assert isinstance(original, list) and isinstance(original[0], Message)
            got[f"a{i}", str(original[0]["Subject"])] += 1
            (status,) = [p for p in parts if p.get_content_type() == "message/delivery-status"]
            groups = status.get_payload()
            assert isinstance(groups, list)
            for group in groups:
                if isinstance(group, Message) and group["Final-Recipient"]:
                    final.append(str(group["Final-Recipient"]))
    return got, final


@pytest.fixture
def replicated(tmp_path: Path, sink: Sink) -> Iterator[tuple[Cluster, list[Replica]]]:
    for i in range(REFUSED):
        sink.refuse[f"bad{i}@sink.test"] = f"550 5.1.1 <bad{i}@sink.test>: no such user"
    site = tmp_path / "site"
    cluster = start_cluster(
        site,
        {
            "me": f"mx.{DOMAIN}",
            "locals": DOMAIN,
            "rcpthosts": DOMAIN,
            "relayclients": "127.0.0.2/32",
            "smtproutes": f"sink.test:127.0.0.1:{sink.port}",
            "rcptcheck": "0",  # RCPT-time verification is not this test's subject
        },
    )
    replicas: list[Replica] = []
    try:
        for account in [f"a{i}" for i in range(SENDERS)] + [f"u{i}" for i in range(LOCALS)]:
            r = cluster.cli("user", "add", f"{account}@{DOMAIN}", "--no-password")
            assert r.returncode == 0, r.stderr
        replicas = [start_replica(cluster, s, site) for s in ("send", "remote")]
        yield cluster, replicas
    finally:
        for replica in replicas:
            replica.stop()
        cluster.stop()


def test_two_send_and_two_remote_deliver_each_message_once(
    replicated: tuple[Cluster, list[Replica]], sink: Sink
) -> None:
    cluster, (send2, remote2) = replicated
    accepted: list[int] = []
    errors: list[BaseException] = []
    per = MESSAGES // SESSIONS
    sessions = [
        threading.Thread(
            target=send_session, args=(cluster, range(n * per, (n + 1) * per), accepted, errors)
        )
        for n in range(SESSIONS)
    ]
    for t in sessions:
        t.start()
    for t in sessions:
        t.join(60)
    assert not errors, errors
    assert sorted(accepted) == list(range(MESSAGES))

    want_sink, want_local, want_bounces = expected()

    def all_arrived() -> bool:
        return (
            sum(at_sink(sink).values()) >= sum(want_sink.values())
            and sum(in_local_mailboxes(cluster).values()) >= sum(want_local.values())
            and sum(bounces_received(cluster)[0].values()) >= sum(want_bounces.values())
        )

    def settle(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            wait_for(predicate, timeout, what)
        except AssertionError as err:
            listing = cluster.cli("queue", "list").stdout
            raise AssertionError(f"{err}; still queued:\n{listing[-3000:]}") from None

    settle(all_arrived, 70, "every delivery and every bounce")

    def queue_empty() -> bool:  # nothing left that could still arrive
        r = cluster.cli("queue", "stat")
        return r.returncode == 0 and r.stdout.startswith("messages in queue: 0\n")

    settle(queue_empty, 30, "an empty queue")

    assert at_sink(sink) == want_sink  # each accepted remote recipient exactly once
    assert in_local_mailboxes(cluster) == want_local  # each local recipient exactly once
    bounces, final = bounces_received(cluster)
    assert bounces == want_bounces  # one bounce per message with a refused recipient
    assert sorted(final) == sorted(
        f"rfc822; bad{k % REFUSED}@sink.test" for k in range(MESSAGES) if k % 4 in (1, 3)
    )
    # every refused recipient was tried once: the 5xx is final, never retried
    refused_tries = Counter(a for a in sink.attempts if a.startswith("bad"))
    assert sum(refused_tries.values()) == sum(want_bounces.values())

    # both replicas of each service took part in the work
    for replica, counter in (
        (send2, "qmesh_send_messages_total"),
        (remote2, "qmesh_remote_deliveries_total"),
    ):
        status, body = replica.get("/metrics")
        assert status == 200
        assert metric_total(body, counter) > 0, f"the second {replica.service} did nothing"
    for service, counter in (
        ("send", "qmesh_send_messages_total"),
        ("remote", "qmesh_remote_deliveries_total"),
    ):
        status, body = cluster.http_get(service, "/metrics")
        assert status == 200
        assert metric_total(body, counter) > 0, f"the first {service} did nothing"
