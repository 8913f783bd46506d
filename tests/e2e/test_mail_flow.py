"""The first message that travels the whole way: SMTP in, object storage and JetStream,
send, local, a mailbox in object storage, POP3 out; and SMTP in, send, remote, another SMTP
server. Driven by real clients (smtplib, poplib) against ``qmesh up`` on both stores."""

from __future__ import annotations

import email
import email.policy
import poplib
import smtplib
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from tests.e2e.cluster import SERVICES, Cluster, start_cluster
from tests.e2e.conftest import Sink, profile_controls
from tests.servers import S3Server

pytestmark = pytest.mark.e2e


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def pop3_messages(cluster: Cluster, user: str, password: str) -> list[bytes]:
    pop = poplib.POP3("127.0.0.1", cluster.pop3_port, timeout=10)
    try:
        pop.user(user)
        pop.pass_(password)
        count, _ = pop.stat()
        return [b"\n".join(pop.retr(i + 1)[1]) for i in range(count)]
    finally:
        pop.quit()


@pytest.fixture(params=["files", "s3"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path, sink: Sink) -> Iterator[Cluster]:
    s3: S3Server | None = None
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
    c = start_cluster(tmp_path / "site", profile_controls(sink.port), s3=s3)
    try:
        add = c.cli("user", "add", "alice@mx.example.test", "--password-stdin", stdin="alice-pw\n")
        assert add.returncode == 0, add.stderr
        yield c
    finally:
        c.stop()


def test_smtp_in_pop3_out(cluster: Cluster) -> None:
    """ARCH-01, SMTPD-57: 250 with qp only after the enqueue; the message reaches POP3 in
    seconds, not at send's next sweep a minute later (QUEUE-09)."""
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("joe@far.test")
        code, _ = smtp.rcpt("alice@example.test")
        assert code == 250
        code, reply = smtp.data(b"Subject: hello\r\n\r\nfirst message\r\n.. dotted line\r\n")
    assert code == 250 and b" qp " in reply and reply.startswith(b"2.0.0 ok ")
    wait_for(
        lambda: len(pop3_messages(cluster, "alice@mx.example.test", "alice-pw")) == 1,
        what="the message in alice's mailbox",
    )
    (message,) = pop3_messages(cluster, "alice@mx.example.test", "alice-pw")
    lines = message.split(b"\n")
    assert lines[0] == b"Return-Path: <joe@far.test>"  # LOCAL-21
    assert lines[1] == b"Delivered-To: alice@example.test"  # LOCAL-20
    assert lines[2].startswith(b"Received: (qmail ") and b"invoked from network" in lines[2]
    assert lines[3].startswith(b"Received: from unknown (HELO client.example) (127.0.0.1)")
    assert message.endswith(b"Subject: hello\n\nfirst message\n.. dotted line")


def test_relay_refused_and_remote_delivery(cluster: Cluster, sink: Sink) -> None:
    """SMTPD-42 refuses a stranger's relay attempt; a relay client's mail reaches the sink
    through smtproutes (REMOTE-10)."""
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30) as smtp:
        smtp.ehlo("stranger.example")
        smtp.mail("joe@far.test")
        code, reply = smtp.rcpt("someone@sink.test")
        assert (code, reply) == (
            553,
            b"5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        )
        code, _ = smtp.rcpt("user%sink.test@example.test")  # SMTPD-43 percent hack
        assert code == 553
        code, reply = smtp.rcpt("nobody@example.test")  # SMTPD-45: local answers "invalid"
        assert (code, reply) == (550, b"5.1.1 sorry, no mailbox here by that name")
    relay = ("127.0.0.2", 0)  # inside control/relayclients
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30, source_address=relay) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("alice@example.test")
        code, _ = smtp.rcpt("someone@sink.test")
        assert code == 250
        code, _ = smtp.data(b"Subject: out\r\n\r\nto the world\r\n")
        assert code == 250
    wait_for(lambda: len(sink.messages) == 1, what="the message at the sink")
    got = sink.messages[0]
    assert got.sender == "alice@example.test" and got.recipients == ["someone@sink.test"]
    assert got.data.endswith(b"Subject: out\r\n\r\nto the world\r\n")


def test_remote_refusal_comes_back_as_a_dsn(cluster: Cluster, sink: Sink) -> None:
    """BOUNCE-02, -03, -20, -21: a 5xx from the remote MX reaches the sender's mailbox as an
    RFC 3464 report (bounceformat is not set, so dsn)."""
    sink.refuse["nobody@sink.test"] = "550 5.1.1 <nobody@sink.test>: no such user"
    relay = ("127.0.0.2", 0)  # inside control/relayclients
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30, source_address=relay) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("alice@example.test")
        code, _ = smtp.rcpt("nobody@sink.test")
        assert code == 250
        code, _ = smtp.data(b"Subject: doomed\r\n\r\nnever arrives\r\n")
        assert code == 250
    wait_for(
        lambda: len(pop3_messages(cluster, "alice@mx.example.test", "alice-pw")) == 1,
        what="the bounce in alice's mailbox",
    )
    (raw,) = pop3_messages(cluster, "alice@mx.example.test", "alice-pw")
    lines = raw.split(b"\n")
    assert lines[0] == b"Return-Path: <>"  # BOUNCE-02: the bounce's sender is empty
    assert lines[2].startswith(b"Received: (qmail ") and b"invoked for bounce" in lines[2]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert (msg["From"], msg["To"], msg["Subject"]) == (
        "MAILER-DAEMON@mx.example.test",
        "alice@example.test",
        "failure notice",
    )
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    text, status, returned = msg.iter_parts()
    assert isinstance(text, EmailMessage)
    assert text.get_content().startswith("Hi. This is the qmail-send program at mx.example.test.\n")
    assert "<nobody@sink.test>:\n127.0.0.1 does not like recipient.\n" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    groups = status.get_payload()
    assert isinstance(groups, list) and len(groups) == 2
    per_message, rcpt = groups
    assert isinstance(per_message, Message) and isinstance(rcpt, Message)
    assert per_message["Reporting-MTA"] == "dns; mx.example.test"
    assert (rcpt["Final-Recipient"], rcpt["Action"], rcpt["Status"]) == (
        "rfc822; nobody@sink.test",
        "failed",
        "5.1.1",
    )
    assert rcpt["Remote-MTA"] == "dns; [127.0.0.1]"
    assert rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 <nobody@sink.test>: no such user"
    assert returned.get_content_type() == "message/rfc822"
    (original,) = returned.iter_parts()
    assert original["Subject"] == "doomed"
    assert sink.messages == []


def test_every_service_answers_health_and_metrics(cluster: Cluster) -> None:
    """ARCHITECTURE 7: /healthz, /readyz and /metrics on every service."""
    for service in SERVICES:
        assert cluster.http_get(service, "/healthz")[0] == 200
        status, body = cluster.http_get(service, "/readyz")
        assert status == 200, (service, body)
        status, body = cluster.http_get(service, "/metrics")
        assert status == 200 and f"qmesh_{service}_" in body, service
    wait_for(  # SEND-40: qmail's "status: local l/L remote r/R" as a structured line
        lambda: any(line["event"] == "status" for line in cluster.log_lines("send")),
        what="send's status line",
    )
    line = next(line for line in cluster.log_lines("send") if line["event"] == "status")
    assert (line["local"], line["local_limit"], line["remote_limit"]) == (0, 10, 20)
    wait_for(  # the gauges the chart's queue-age alert reads
        lambda: (
            'qmesh_send_queue_oldest_seconds{stage="queue"}'
            in cluster.http_get("send", "/metrics")[1]
        ),
        what="send's queue gauges",
    )
