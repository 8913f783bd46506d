"""A deferred message keeps its schedule across a restart of everything (ARCH-06..08, SEND-20).

The remote MX answers 4xx; the message waits for its second remote pass, 400 s after birth
(Appendix A). Every process of the site — ``qmesh up``, NATS and the five services — is killed
with SIGKILL and started again on the same data directory. The record ``qmesh queue show``
prints is the same before and after: same birth, same first pass, same attempt count, same
next-attempt time; no new attempt reaches the MX before that time. ``qmesh queue flush``
(SEND-25) then makes exactly one new attempt, and once the MX accepts, exactly one delivery.

The services take their clock from the system, so the 400 s themselves are not waited for.
"""

from __future__ import annotations

import calendar
import os
import re
import signal
import smtplib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, start_cluster
from tests.e2e.conftest import Sink

pytestmark = pytest.mark.e2e

RELAY = ("127.0.0.2", 0)  # inside control/relayclients
LATER = "later@sink.test"
QUIET = 4.0  # seconds in which no new attempt may happen


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stays(predicate: Callable[[], bool], seconds: float) -> bool:
    """``predicate`` holds at every poll for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.2)
    return predicate()


def show(cluster: Cluster, qid: str) -> str:
    r = cluster.cli("queue", "show", qid)
    assert r.returncode == 0, r.stderr
    return r.stdout


def remote_line(text: str) -> str:
    (line,) = [x for x in text.splitlines() if x.strip().startswith("remote ")]
    return line


def schedule(text: str) -> tuple[str, str, str, str]:
    """(born, the pass and when it started, attempts, next attempt) as ``queue show`` has them."""
    born = re.search(r"^  born +(.+ UTC)", text, re.M)
    tried = re.search(r"(pass \d+ started [^;]+);", remote_line(text))
    attempts = re.search(r"^ +attempts +(\d+)$", text, re.M)
    nxt = re.search(r"next attempt (\S+ \S+ UTC)", remote_line(text))
    assert born and tried and attempts and nxt, text
    return born.group(1), tried.group(1), attempts.group(1), nxt.group(1)


def utc_seconds(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S UTC"))


def settled(cluster: Cluster, qid: str, attempts: int) -> Callable[[], bool]:
    """The record shows ``attempts`` attempts and no delivery in flight."""

    def check() -> bool:
        text = show(cluster, qid)
        return f"attempts   {attempts}\n" in text and "in flight: none;" in remote_line(text)

    return check


def kill_everything(cluster: Cluster) -> None:
    """SIGKILL ``qmesh up`` and every process it started (NATS and the services)."""
    children = subprocess.run(
        ["pgrep", "-P", str(cluster.process.pid)], capture_output=True, text=True, check=False
    )
    pids = [cluster.process.pid] + [int(p) for p in children.stdout.split()]
    assert len(pids) >= 7, f"expected NATS and five services under qmesh up: {pids}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    cluster.process.wait(10)

    def gone() -> bool:
        for pid in pids[1:]:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            return False
        return True

    wait_for(gone, 20, "every killed process to go away")


def test_restart_keeps_the_retry_schedule(tmp_path: Path, sink: Sink) -> None:
    sink.refuse[LATER] = "451 4.3.0 <later@sink.test>: mailbox busy, try later"
    site = tmp_path / "site"
    controls = {
        "me": "mx.restart.test",
        "locals": "restart.test",
        "rcpthosts": "restart.test",
        "relayclients": "127.0.0.2/32",
        "smtproutes": f"sink.test:127.0.0.1:{sink.port}",
        "rcptcheck": "0",
    }
    cluster = start_cluster(site, controls)
    try:
        add = cluster.cli("user", "add", "joe@restart.test", "--no-password")
        assert add.returncode == 0, add.stderr
        with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30, source_address=RELAY) as smtp:
            smtp.ehlo("client.restart.test")
            smtp.mail("joe@restart.test")
            assert smtp.rcpt(LATER)[0] == 250
            code, reply = smtp.data(b"Subject: patience\r\n\r\nplease wait\r\n")
        assert code == 250, reply
        qp = reply.decode().split(" qp ")[1].strip()

        wait_for(lambda: sink.attempts == [LATER], 30, "the first attempt at the sink")
        listing = cluster.cli("queue", "list")  # the id, as an operator finds it
        assert listing.returncode == 0, listing.stderr
        (qid,) = [line.split()[0] for line in listing.stdout.splitlines() if "from <joe@" in line]
        assert f"  qp        {qp}\n" in show(cluster, qid)
        wait_for(settled(cluster, qid, 1), 30, "the deferral in the record")
        before = show(cluster, qid)
        born, tried, attempts, nxt = schedule(before)
        assert tried.startswith("pass 1 started ") and attempts == "1"
        assert utc_seconds(nxt) - utc_seconds(born) == 400  # Appendix A: remote attempt 2
        assert "mailbox busy, try later" in before  # the last report is kept
    finally:
        kill_everything(cluster)

    # the same site, every process new; NATS gets a new port, the record must survive
    cluster = start_cluster(site)
    try:
        after = show(cluster, qid)
        assert schedule(after) == (born, tried, attempts, nxt)  # ARCH-07: not reset
        assert stays(lambda: sink.attempts == [LATER], QUIET), sink.attempts  # not at once
        assert schedule(show(cluster, qid)) == (born, tried, attempts, nxt)
        assert time.time() < utc_seconds(nxt)  # the quiet was all before the next attempt

        flush = cluster.cli("queue", "flush")  # SEND-25: due now
        assert flush.returncode == 0, flush.stdout + flush.stderr
        assert flush.stdout.startswith("flushed: 1 of 1 messages due"), flush.stdout
        wait_for(lambda: len(sink.attempts) >= 2, 30, "the flushed attempt")
        wait_for(settled(cluster, qid, 2), 30, "the second deferral in the record")
        born2, tried2, attempts2, nxt2 = schedule(show(cluster, qid))
        assert (born2, attempts2, nxt2) == (born, "2", nxt)  # same birth, same square
        assert tried2.startswith("pass 2 started ")
        assert stays(lambda: sink.attempts == [LATER, LATER], QUIET), sink.attempts

        del sink.refuse[LATER]  # the MX takes mail again; one more flush delivers it once
        assert cluster.cli("queue", "flush").returncode == 0
        wait_for(lambda: len(sink.messages) >= 1, 30, "the delivery")

        def gone() -> bool:
            return cluster.cli("queue", "show", qid).returncode == 1  # finished: no record

        wait_for(gone, 30, "the finished message to leave the queue")
        assert sink.attempts == [LATER] * 3
        assert [(m.sender, m.recipients) for m in sink.messages] == [("joe@restart.test", [LATER])]
    finally:
        cluster.stop()
