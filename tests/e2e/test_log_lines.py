"""How much the services log for one message on the common path (throughput #10: at most
about five INFO lines per message, qmail's ``new msg``, ``info msg``, ``starting delivery``,
``delivery N: ...`` and ``end msg`` being the model, SEND-40)."""

from __future__ import annotations

import smtplib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import SERVICES, Cluster, start_cluster
from tests.e2e.conftest import Sink, profile_controls

pytestmark = pytest.mark.e2e

MOST_PER_RECIPIENT = 5
INFO_AND_ABOVE = {"info", "warning", "error", "critical"}
LIFECYCLE = ("new_msg", "info_msg", "starting_delivery", "delivery_success", "end_msg")


@pytest.fixture
def cluster(tmp_path: Path, sink: Sink) -> Iterator[Cluster]:
    c = start_cluster(tmp_path / "site", profile_controls(sink.port))
    try:
        add = c.cli("user", "add", "alice@mx.example.test", "--no-password")
        assert add.returncode == 0, add.stderr
        yield c
    finally:
        c.stop()


def everything(cluster: Cluster) -> list[dict[str, Any]]:
    return [line for service in SERVICES for line in cluster.log_lines(service)]


def send(cluster: Cluster, sender: str, rcpt: str, source: str) -> int:
    """One message over SMTP from ``source``; its qp."""
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30, source_address=(source, 0)) as s:
        s.ehlo("client.example")
        s.mail(sender)
        code, _ = s.rcpt(rcpt)
        assert code == 250
        code, reply = s.data(b"Subject: count\r\n\r\none line\r\n")
        assert code == 250
    return int(reply.split(b" qp ")[1].split()[0])


def about(cluster: Cluster, qp: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every line naming the message with ``qp``, once send has logged its ``end_msg``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = everything(cluster)
        ids = {line["msg_id"] for line in lines if line["event"] == "info_msg" and line["qp"] == qp}
        if ids and any(line["event"] == "end_msg" and line["msg_id"] in ids for line in lines):
            (msg_id,) = ids
            time.sleep(0.5)  # lines another service writes after send's last one
            return [line for line in everything(cluster) if line.get("msg_id") == msg_id]
        time.sleep(0.2)
    raise AssertionError(f"no info_msg and end_msg for qp {qp}")


def describe(lines: list[dict[str, Any]]) -> str:
    return "\n".join(f"{line['service']}: {line['level']} {line['event']}" for line in lines)


def test_one_recipient_costs_at_most_five_info_lines(cluster: Cluster, sink: Sink) -> None:
    """A local and a remote delivery to one recipient each: at most five INFO (and above)
    lines carry the message's id across all services, and they are send's activity record
    (SEND-40): new_msg, info_msg with the client and size, starting_delivery, the outcome,
    end_msg."""
    sent = [
        (sender, client, send(cluster, sender, rcpt, client))
        for sender, rcpt, client in (
            ("joe@far.test", "alice@example.test", "127.0.0.1"),  # local
            ("alice@example.test", "someone@sink.test", "127.0.0.2"),  # relay client: remote
        )
    ]
    for sender, client, qp in sent:
        info = [line for line in about(cluster, qp) if line["level"] in INFO_AND_ABOVE]
        assert len(info) <= MOST_PER_RECIPIENT, describe(info)
        assert Counter(line["event"] for line in info) == Counter(LIFECYCLE), describe(info)
        (arrived,) = (line for line in info if line["event"] == "info_msg")
        assert (arrived["sender"], arrived["client_ip"]) == (sender, client)
        assert arrived["bytes"] > 0
    assert len(sink.messages) == 1


def test_a_failure_stays_at_info_in_send_and_in_the_channel(cluster: Cluster, sink: Sink) -> None:
    """A refused recipient: send's delivery_failure and bounce_msg (SEND-40) and remote's own
    delivery.result with the remote server's words stay at INFO (REMOTE-32)."""
    sink.refuse["nobody@sink.test"] = "550 5.1.1 <nobody@sink.test>: no such user"
    qp = send(cluster, "alice@example.test", "nobody@sink.test", "127.0.0.2")
    info = [line for line in about(cluster, qp) if line["level"] in INFO_AND_ABOVE]
    events = {(line["service"], line["event"]) for line in info}
    assert {
        ("send", "delivery_failure"),
        ("send", "bounce_msg"),
        ("remote", "delivery.result"),
    } <= (events), describe(info)
    (result,) = (line for line in info if line["event"] == "delivery.result")
    assert result["outcome"] == "failed" and "no such user" in result["report"]
