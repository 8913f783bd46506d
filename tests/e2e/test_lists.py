"""Mailing lists end to end (issue #15): ``qmesh up``, the ``qmesh list`` commands, SMTP in,
an SMTP sink standing in for the subscribers' servers (``sink.test`` is routed to it)."""

from __future__ import annotations

import email
import email.policy
import logging
import smtplib
import time
import urllib.request
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, start_cluster
from tests.e2e.conftest import Received, Sink, profile_controls

pytestmark = pytest.mark.e2e

LIST = "announce@lists.test"


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def send(cluster: Cluster, sender: str, rcpt: str, text: str) -> None:
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        smtp.mail(sender)
        code, reply = smtp.rcpt(rcpt)
        assert code == 250, reply
        code, reply = smtp.data(text.replace("\n", "\r\n").encode())
        assert code == 250, reply


def parsed(m: Received) -> EmailMessage:
    msg = email.message_from_bytes(m.data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def arrivals(sink: Sink, to: str, subject: str) -> list[tuple[Received, EmailMessage]]:
    found = []
    for m in list(sink.messages):
        if to in m.recipients:
            msg = parsed(m)
            if subject.lower() in str(msg["Subject"]).lower():
                found.append((m, msg))
    return found


def one(sink: Sink, to: str, subject: str) -> tuple[Received, EmailMessage]:
    wait_for(lambda: bool(arrivals(sink, to, subject)), what=f"{subject!r} to {to}")
    return arrivals(sink, to, subject)[0]


@pytest.fixture
def cluster(tmp_path: Path, sink: Sink) -> Iterator[Cluster]:
    c = start_cluster(tmp_path / "site", profile_controls(sink.port))
    try:
        done = c.cli("domain", "add", "lists.test")
        assert done.returncode == 0, done.stderr
        yield c
    finally:
        c.stop()


def subscribers(cluster: Cluster, name: str = LIST) -> list[str]:
    done = cluster.cli("list", "subscribers", name)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def subscribe(cluster: Cluster, sink: Sink, who: str, name: str = LIST) -> None:
    local, _, domain = name.partition("@")
    send(cluster, who, f"{local}-subscribe@{domain}", "Subject: sub\n\nplease\n")
    _, request = one(sink, who, f"confirm subscribe to {name}")
    confirm = str(request["Reply-To"])
    send(cluster, who, confirm, "Subject: Re: confirm\n\nyes\n")
    one(sink, who, f"WELCOME to {name}")


def test_subscribe_confirm_post_and_refusals(cluster: Cluster, sink: Sink) -> None:
    made = cluster.cli("list", "create", LIST, "--prefix", "[announce]", "--archive")
    assert made.returncode == 0, made.stderr
    again = cluster.cli("list", "create", LIST)
    assert again.returncode == 1 and "exists" in again.stderr

    # a subscription waits for a confirmation sent to the address itself
    send(cluster, "joe@sink.test", "announce-subscribe@lists.test", "Subject: sub\n\nhi\n")
    got, request = one(sink, "joe@sink.test", "confirm subscribe to announce@lists.test")
    assert got.sender == "announce-return-@lists.test"
    confirm = str(request["Reply-To"])
    assert confirm.startswith("announce-sc.") and confirm.endswith("-joe=sink.test@lists.test")
    assert subscribers(cluster) == []

    # a forged confirmation (code changed) is refused with a clear reply, from <>
    head, dash, tail = confirm.partition("-joe=")
    forged = head[:-1] + ("0" if head[-1] != "0" else "1") + dash + tail
    send(cluster, "joe@sink.test", forged, "Subject: yes\n\nyes\n")
    got, refusal = one(sink, "joe@sink.test", "refused by announce@lists.test")
    assert got.sender in ("", "<>")
    assert "not valid for this list and address" in refusal.get_content()
    assert subscribers(cluster) == []

    # nobody can subscribe a third party: the request goes to the third party, not to mallory
    send(cluster, "mallory@sink.test", "announce-subscribe-ann=sink.test@lists.test", "\n")
    one(sink, "ann@sink.test", "confirm subscribe to announce@lists.test")
    assert not arrivals(sink, "mallory@sink.test", "confirm")
    assert subscribers(cluster) == []

    # the real confirmation
    send(cluster, "joe@sink.test", confirm, "Subject: Re: confirm\n\nyes\n")
    one(sink, "joe@sink.test", "WELCOME to announce@lists.test")
    assert subscribers(cluster) == ["joe@sink.test"]

    # an open post reaches the subscriber with the list's fields
    send(cluster, "someone@far.test", LIST, "From: someone@far.test\nSubject: news\n\nhello all\n")
    got, post = one(sink, "joe@sink.test", "[announce] news")
    assert got.sender == "announce-return-1-@lists.test"
    assert post["List-Id"] == "<announce.lists.test>"
    assert post["List-Post"] == "<mailto:announce@lists.test>"
    assert post["List-Unsubscribe"] == "<mailto:announce-unsubscribe@lists.test>"
    assert post["List-Help"] == "<mailto:announce-help@lists.test>"
    assert post["Precedence"] == "bulk"
    assert post.get_content().rstrip() == "hello all"

    # help, and the archive
    send(cluster, "joe@sink.test", "announce-help@lists.test", "\n")
    one(sink, "joe@sink.test", "help for announce@lists.test")
    send(cluster, "joe@sink.test", "announce-get.1@lists.test", "\n")
    _, archived = one(sink, "joe@sink.test", "archive message 1")
    assert "hello all" in archived.as_string()

    # unsubscribe, confirmed the same way
    send(cluster, "joe@sink.test", "announce-unsubscribe@lists.test", "\n")
    _, request = one(sink, "joe@sink.test", "confirm unsubscribe to announce@lists.test")
    send(cluster, "joe@sink.test", str(request["Reply-To"]), "\n")
    one(sink, "joe@sink.test", "GOODBYE from announce@lists.test")
    assert subscribers(cluster) == []


def test_subscribers_only_moderated_loops_and_foreign_cookies(cluster: Cluster, sink: Sink) -> None:
    for args in (
        ("members@lists.test", "--subscribers-only"),
        ("mod@lists.test", "--moderated", "--moderator", "boss@sink.test"),
    ):
        made = cluster.cli("list", "create", *args)
        assert made.returncode == 0, made.stderr
    added = cluster.cli("list", "add", "members@lists.test", "joe@sink.test")
    assert added.returncode == 0 and "1 added" in added.stdout, added.stderr
    assert cluster.cli("list", "add", "mod@lists.test", "joe@sink.test").returncode == 0

    # subscribers only: a stranger is refused with a reply, a subscriber is posted
    send(cluster, "eve@sink.test", "members@lists.test", "Subject: spam\n\nbuy\n")
    _, refusal = one(sink, "eve@sink.test", "refused by members@lists.test")
    assert "only subscribers may post" in refusal.get_content()
    send(cluster, "joe@sink.test", "members@lists.test", "Subject: from joe\n\nhi\n")
    one(sink, "joe@sink.test", "from joe")
    assert not arrivals(sink, "joe@sink.test", "spam")

    # moderated: the post waits; accept posts it, reject tells the poster
    send(cluster, "ann@far.test", "mod@lists.test", "Subject: first\n\none\n")
    _, request = one(sink, "boss@sink.test", "MODERATE for mod@lists.test")
    accept = str(request["Reply-To"])
    assert accept.startswith("mod-accept-")
    assert not arrivals(sink, "joe@sink.test", "first")
    send(cluster, "boss@sink.test", accept, "\n")
    one(sink, "joe@sink.test", "first")
    send(cluster, "boss@sink.test", accept, "\n")  # decided already: refused, nothing twice
    one(sink, "boss@sink.test", "refused by mod@lists.test")
    send(cluster, "bob@sink.test", "mod@lists.test", "Subject: second\n\ntwo\n")
    wait_for(lambda: len(arrivals(sink, "boss@sink.test", "MODERATE")) == 2, what="2nd request")
    _, request = arrivals(sink, "boss@sink.test", "MODERATE")[1]
    reject = str(request["Reply-To"]).replace("mod-accept-", "mod-reject-")
    send(cluster, "boss@sink.test", reject, "\n")
    _, refusal = one(sink, "bob@sink.test", "refused by mod@lists.test")
    assert "a moderator rejected your message" in refusal.get_content()
    assert len(arrivals(sink, "joe@sink.test", "first")) == 1
    assert not arrivals(sink, "joe@sink.test", "second")

    # a post that has been through the list already (ezmlm's marker) is refused, not posted
    send(
        cluster,
        "joe@sink.test",
        "members@lists.test",
        "Delivered-To: mailing list members@lists.test\nSubject: looped\n\nagain\n",
    )
    _, refusal = one(sink, "joe@sink.test", "refused by members@lists.test")
    assert "looping" in refusal.get_content()
    assert not [m for m in sink.messages if b"Subject: looped" in m.data and m.sender != "<>"]

    # a confirmation cookie of one list is refused by another
    send(cluster, "kim@sink.test", "members-subscribe@lists.test", "\n")
    _, request = one(sink, "kim@sink.test", "confirm subscribe to members@lists.test")
    foreign = str(request["Reply-To"]).replace("members-sc.", "mod-sc.")
    send(cluster, "kim@sink.test", foreign, "\n")
    _, refusal = one(sink, "kim@sink.test", "refused by mod@lists.test")
    assert "not valid for this list" in refusal.get_content()
    assert "kim@sink.test" not in subscribers(cluster, "mod@lists.test")
    assert "kim@sink.test" not in subscribers(cluster, "members@lists.test")

    # the owner's commands: show, remove, del (the address is then unknown at RCPT)
    shown = cluster.cli("list", "show", "members@lists.test")
    assert shown.returncode == 0 and "flags: subscribers-only" in shown.stdout
    assert "subscribers: 1" in shown.stdout
    removed = cluster.cli("list", "remove", "members@lists.test", "joe@sink.test")
    assert removed.returncode == 0 and "1 removed" in removed.stdout
    bad = cluster.cli("list", "add", "members@lists.test", "x\r\ny@sink.test")
    assert bad.returncode == 1 and "control character" in bad.stderr
    deleted = cluster.cli("list", "del", "members@lists.test")
    assert deleted.returncode == 0, deleted.stderr
    assert cluster.cli("list", "show", "members@lists.test").returncode == 1
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("joe@sink.test")
        code, _ = smtp.rcpt("members@lists.test")
        assert code == 550
        code, _ = smtp.rcpt("members-subscribe@lists.test")
        assert code == 550


@pytest.mark.timeout(600)
def test_a_2000_subscriber_post_is_one_message_in_batched_transactions(
    cluster: Cluster, sink: Sink
) -> None:
    made = cluster.cli("list", "create", LIST)
    assert made.returncode == 0, made.stderr
    people = [f"s{i:04d}@sink.test" for i in range(2000)]
    added = cluster.cli("list", "add", LIST, stdin="\n".join(people) + "\n")
    assert added.returncode == 0 and "2000 added" in added.stdout, added.stderr

    started = time.monotonic()
    send(cluster, "boss@far.test", LIST, "From: boss@far.test\nSubject: big news\n\nto all\n")

    def reached() -> set[str]:
        return {r for m in sink.messages if b"big news" in m.data for r in m.recipients}

    wait_for(lambda: reached() == set(people), timeout=300, what="the post at every subscriber")
    elapsed = time.monotonic() - started
    posts = [m for m in sink.messages if b"big news" in m.data]
    assert {m.sender for m in posts} == {"announce-return-1-@lists.test"}
    # remote shares a transaction among the jobs it takes together (REMOTE-40); at most
    # concurrencyremote (20) are in flight, so batches of several recipients, not one each
    logging.getLogger(__name__).warning(
        "2000-subscriber post: %d SMTP transactions, all in %.1fs", len(posts), elapsed
    )
    assert len(posts) <= len(people) // 4, f"{len(posts)} transactions: not batched"
    # one enqueue: one message in the queue for the whole post
    infos = [
        line
        for line in cluster.log_lines("send")
        if line.get("event") == "info_msg" and "announce-return-1-" in str(line.get("sender"))
    ]
    assert len(infos) == 1, infos


def test_a_bouncing_subscriber_is_warned_probed_then_removed(cluster: Cluster, sink: Sink) -> None:
    """ezmlm-return/ezmlm-warn: bounces counted, a warning naming the bounced posts after the
    bounce period (0 here), a probe when the warning bounces, removal when the probe bounces
    too; the others stay."""
    made = cluster.cli("list", "create", LIST, "--bounce-period", "0")
    assert made.returncode == 0, made.stderr
    people = ["a@sink.test", "bad@sink.test", "c@sink.test"]
    assert cluster.cli("list", "add", LIST, *people).returncode == 0
    sink.refuse["bad@sink.test"] = "550 5.1.1 <bad@sink.test>: no such user"

    send(cluster, "boss@far.test", LIST, "From: boss@far.test\nSubject: one\n\nx\n")
    wait_for(
        lambda: "bad@sink.test" not in subscribers(cluster),
        timeout=120,
        what="the bouncing subscriber removed",
    )
    assert sink.attempts.count("bad@sink.test") == 3  # the post, the warning, the probe
    assert subscribers(cluster) == ["a@sink.test", "c@sink.test"]
    lines = [line for line in cluster.log_lines("lists") if line.get("event") == "lists.handled"]
    assert [line["result"] for line in lines if line["request"] == "return"] == [
        "warned",
        "probed",
        "removed",
    ]


def test_digest_after_every_n_posts(cluster: Cluster, sink: Sink) -> None:
    """ezmlm-tstdig -m: the digest goes out after N posts, to confirmed digest subscribers."""
    made = cluster.cli("list", "create", LIST, "--digest", "--digest-every", "2")
    assert made.returncode == 0, made.stderr
    send(cluster, "dee@sink.test", "announce-digest-subscribe@lists.test", "\n")
    _, request = one(sink, "dee@sink.test", "confirm subscribe (digest) to announce@lists.test")
    send(cluster, "dee@sink.test", str(request["Reply-To"]), "\n")
    one(sink, "dee@sink.test", "WELCOME to announce@lists.test")
    assert cluster.cli("list", "subscribers", LIST, "--digest").stdout.split() == ["dee@sink.test"]

    for subject in ("first topic", "second topic"):
        send(
            cluster, "ann@far.test", LIST, f"From: ann@far.test\nSubject: {subject}\n\n{subject}\n"
        )
    got, digest = one(sink, "dee@sink.test", "announce Digest 1-2")
    assert got.sender == "announce-return-digest-@lists.test"
    toc, inner = digest.iter_parts()
    assert "1. first topic" in toc.get_content() and "2. second topic" in toc.get_content()
    assert inner.get_content_type() == "multipart/digest"
    subjects = [str(p.get_content()["Subject"]) for p in inner.iter_parts()]
    assert subjects == ["first topic", "second topic"]
    assert not arrivals(sink, "dee@sink.test", "first topic")  # no single posts to digest readers


def test_timer_digest_one_click_unsubscribe_and_held_post_expiry(
    tmp_path: Path, sink: Sink
) -> None:
    """Through ``qmesh up`` with the lists' timer every second: a quiet list's RFC 1153 digest
    goes out with no further post; the welcome's RFC 8058 link (admin's port, set by ``qmesh
    up``) shows a button on GET and unsubscribes on the one-click POST; a held post nobody
    moderates goes back to its poster (ezmlm-clean); a personal list's post carries each
    reader's own link."""
    c = start_cluster(
        tmp_path / "site",
        profile_controls(sink.port),
        extra_env={"QMESH_LISTS_TIMER_SECONDS": "1"},
    )
    try:
        assert c.cli("domain", "add", "lists.test").returncode == 0
        made = c.cli(
            "list", "create", "quiet@lists.test", "--digest", "--digest-hours", "0.001",
            "--digest-format", "rfc1153",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        send(c, "dee@sink.test", "quiet-digest-subscribe@lists.test", "\n")
        _, request = one(sink, "dee@sink.test", "confirm subscribe (digest) to quiet@lists.test")
        send(c, "dee@sink.test", str(request["Reply-To"]), "\n")
        _, welcome = one(sink, "dee@sink.test", "WELCOME to quiet@lists.test")
        assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = str(welcome["List-Unsubscribe"]).split(">")[0].lstrip("<")
        assert link.startswith(f"http://127.0.0.1:{c.env['QMESH_ADMIN_PORT']}/unsubscribe/")

        send(c, "ann@far.test", "quiet@lists.test", "From: ann@far.test\nSubject: lone\n\nhi\n")
        got, digest = one(sink, "dee@sink.test", "quiet Digest V")  # no second post came
        assert got.sender == "quiet-return-digest-@lists.test"
        assert digest.get_content_type() == "text/plain"
        text = digest.get_content().replace("\r\n", "\n")
        assert "Today's Topics:" in text and "   1. lone" in text and "\nhi\n" in text

        with urllib.request.urlopen(link, timeout=30) as page:  # a link scanner's GET
            assert page.status == 200
            assert "Unsubscribe dee@sink.test from quiet@lists.test?" in page.read().decode()
        digest_subs = c.cli("list", "subscribers", "quiet@lists.test", "--digest").stdout.split()
        assert digest_subs == ["dee@sink.test"]
        one_click = urllib.request.Request(
            link, data=b"List-Unsubscribe=One-Click", method="POST"
        )  # what a mailbox provider sends: no cookie, no CSRF token
        with urllib.request.urlopen(one_click, timeout=30) as page:
            assert page.status == 200
            assert "no longer subscribed" in page.read().decode()
        assert c.cli("list", "subscribers", "quiet@lists.test", "--digest").stdout == ""

        made = c.cli(
            "list", "create", "held@lists.test", "--moderated", "--moderator", "boss@sink.test",
            "--moderation-hours", "0.001",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        send(c, "ann@sink.test", "held@lists.test", "From: ann@sink.test\nSubject: wait\n\nw\n")
        one(sink, "boss@sink.test", "MODERATE for held@lists.test")
        got, back = one(sink, "ann@sink.test", "refused by held@lists.test")
        assert got.sender in ("", "<>")  # the null sender: never answered
        notice, enclosed = back.iter_parts()
        assert "no moderator accepted your message within 0.001 hours" in notice.get_content()
        assert enclosed.get_content_type() == "message/rfc822"

        # --personal: every post carries its reader's own one-click link
        assert c.cli("list", "create", "own@lists.test", "--personal").returncode == 0
        assert c.cli("list", "add", "own@lists.test", "x@sink.test", "y@sink.test").returncode == 0
        send(c, "ann@far.test", "own@lists.test", "From: ann@far.test\nSubject: mine\n\nm\n")
        links = {}
        for who in ("x@sink.test", "y@sink.test"):
            got, copy = one(sink, who, "mine")
            assert got.recipients == [who] and copy["List-Unsubscribe-Post"]
            links[who] = str(copy["List-Unsubscribe"]).split(">")[0].lstrip("<")
        assert links["x@sink.test"] != links["y@sink.test"]
        one_click = urllib.request.Request(
            links["y@sink.test"], data=b"List-Unsubscribe=One-Click", method="POST"
        )
        with urllib.request.urlopen(one_click, timeout=30) as page:
            assert page.status == 200
        assert c.cli("list", "subscribers", "own@lists.test").stdout.split() == ["x@sink.test"]
    finally:
        c.stop()
