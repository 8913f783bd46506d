"""MTA-STS through ``qmesh up`` (issue 11, RFC 8461): ``remote`` finds the MX by DNS, fetches
each domain's policy over HTTPS and holds back what an ``enforce`` policy forbids.

The world: the loopback DNS server (MX, A and ``_mta-sts`` TXT records) named by
``QMESH_DNS_SERVERS``; an HTTPS policy server whose certificate comes from a test CA given by
``QMESH_TLS_CA_FILE``; an MX without STARTTLS. Both listen on 127.0.0.6, since 127.0.0.1 is in
``ipme`` (an MX there would be this host, REMOTE-16), on free ports that
``QMESH_REMOTE_SMTP_PORT`` and ``QMESH_REMOTE_HTTPS_PORT`` name instead of 25 and 443.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.remote import report
from tests.dnsserver import serving, txt
from tests.e2e.cluster import Cluster, start_cluster
from tests.e2e.conftest import profile_controls
from tests.e2e.test_restart import show, wait_for
from tests.integration.remote_peers import Sink, start_sink
from tests.mtasts import background_loop, make_pki, policy, policy_server

pytestmark = pytest.mark.e2e

WORLD = "127.0.0.6"
RELAY = ("127.0.0.2", 0)  # a relayclient of the profile
NAMES = ["mx.enforce.test", "mta-sts.enforce.test", "mx.testing.test", "mta-sts.testing.test"]
POLICIES = {
    "mta-sts.enforce.test": policy("enforce", "mx.enforce.test"),
    "mta-sts.testing.test": policy("testing", "mx.testing.test"),
}


@dataclass
class World:
    cluster: Cluster
    sink: Sink


def records() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for domain, policy_id in (("enforce.test", "20261206"), ("testing.test", "7")):
        found[(domain, "MX")] = [f"10 mx.{domain}."]
        found[(f"mx.{domain}", "A")] = [WORLD]
        found[(f"_mta-sts.{domain}", "TXT")] = [txt(f"v=STSv1; id={policy_id}")]
        found[(f"mta-sts.{domain}", "A")] = [WORLD]
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pki = make_pki(tmp_path_factory.mktemp("pki"), NAMES)
    with background_loop() as loop, serving(records()) as dns:
        sink = Sink()
        server, smtp_port = loop.run(start_sink(sink, WORLD))  # no STARTTLS offered
        https_port = loop.enter(policy_server(pki, POLICIES, WORLD))
        cluster = start_cluster(
            tmp_path_factory.mktemp("mtasts") / "site",
            profile_controls(smtp_port),
            extra_env={
                "QMESH_DNS_SERVERS": dns.server,
                "QMESH_TLS_CA_FILE": str(pki.ca),
                "QMESH_REMOTE_SMTP_PORT": str(smtp_port),
                "QMESH_REMOTE_HTTPS_PORT": str(https_port),
            },
        )
        try:
            yield World(cluster, sink)
        finally:
            cluster.stop()
            server.close()


def relay(cluster: Cluster, recipient: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30, source_address=RELAY) as smtp:
        smtp.ehlo("client.example.test")
        smtp.mail("joe@example.test")
        assert smtp.rcpt(recipient)[0] == 250
        code, reply = smtp.data(f"Subject: {subject}\r\n\r\n{subject} body\r\n".encode())
    assert code == 250, reply


def queue_id(cluster: Cluster, recipient: str) -> str | None:
    """The id of the queued message for ``recipient``, as ``qmesh queue list`` shows it."""
    listing = cluster.cli("queue", "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    for i, line in enumerate(lines):  # the id opens the message's block; recipients follow
        if line.endswith(f"  {recipient}"):
            return next(x.split()[0] for x in reversed(lines[: i + 1]) if not x[:1].isspace())
    return None


def metric(cluster: Cluster, name: str, **labels: str) -> float:
    status, text = cluster.http_get("remote", "/metrics")
    assert status == 200
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.split()[-1])
    return 0.0


def test_enforce_defers_plaintext_with_a_clear_reason_and_testing_delivers(world: World) -> None:
    """RFC 8461 section 5: the MX of enforce.test offers no STARTTLS, so nothing is sent to it
    and the message waits, its report naming the policy (``qmesh queue show``); testing.test's
    policy only reports: delivered in plain text and counted (RFC 8460's result types)."""
    cluster, sink = world.cluster, world.sink
    relay(cluster, "bob@enforce.test", "enforced")
    relay(cluster, "carol@testing.test", "tested")

    wait_for(lambda: len(sink.messages) == 1, 60, "the testing.test message at the MX")
    (got,) = sink.messages
    assert got.recipients == ["carol@testing.test"] and not got.tls
    assert (
        metric(
            cluster,
            "qmesh_remote_tls_policy_total",
            policy="mta-sts",
            mode="testing",
            result="failed",
        )
        == 1.0
    )

    wait_for(lambda: queue_id(cluster, "bob@enforce.test") is not None, 30, "the queue entry")
    qid = queue_id(cluster, "bob@enforce.test")
    assert qid is not None
    reason = report.tls_required(
        WORLD, "the MTA-STS policy of enforce.test", "STARTTLS is not offered"
    ).strip()
    wait_for(lambda: reason in show(cluster, qid), 60, "the deferral's reason in the record")
    text = show(cluster, qid)
    assert re.search(r"^ +\d+ +remote +not done +bob@enforce\.test$", text, re.M), text
    assert all(m.recipients != ["bob@enforce.test"] for m in sink.messages)
    assert (
        metric(
            cluster,
            "qmesh_remote_tlsrpt_sessions_total",
            policy_type="sts",
            result_type="starttls-not-supported",
        )
        >= 1.0
    )
