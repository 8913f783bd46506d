"""The lists' pure logic (issue #15): address grammar, cookies, addresses, post headers,
bounce reading and the probe rule. Hostile input throughout."""

from __future__ import annotations

import pytest

from qmesh.auth.dmarc import published_policy
from qmesh.lists.address import address_problem, verp_decode, verp_encode
from qmesh.lists.records import ListRecord
from services.lists import bounce, cookie, post
from services.lists.request import parse

KEY = b"k" * 32
LIST = "talk@lists.test"
RECORD = ListRecord(domain="lists.test", name="talk", prefix="[talk]")


@pytest.mark.parametrize(
    ("ext", "kind", "target", "digest"),
    [
        ("", "post", None, False),
        ("subscribe", "subscribe", None, False),
        ("SUBSCRIBE", "subscribe", None, False),
        ("subscribe-joe=far.test", "subscribe", "joe@far.test", False),
        ("subscribe-joe", "subscribe", "", False),  # no '=': refused later, never the sender
        ("unsubscribe-a=b=c.test", "unsubscribe", "a=b@c.test", False),
        ("digest-subscribe", "subscribe", None, True),
        ("help", "help", None, False),
        ("owner", "owner", None, False),
        ("whatever", "help", None, False),
        ("return-12-joe=far.test", "return", "joe@far.test", False),
        ("return-12-", "return", None, False),
        ("get.7", "get", None, False),
        ("get.x", "help", None, False),
        ("get." + "9" * 40, "help", None, False),
    ],
)
def test_request_grammar(ext: str, kind: str, target: str | None, digest: bool) -> None:
    r = parse(ext)
    assert (r.kind, r.target, r.digest) == (kind, target, digest)


def test_return_numbers_and_probes() -> None:
    assert parse("return-12-joe=far.test").number == 12
    assert parse("return-probe-joe=far.test").action == "probe"
    assert parse("return-warn-joe=far.test").action == "warn"
    assert parse("return-warn-joe=far.test").target == "joe@far.test"
    assert parse("return-" + "1" * 30 + "-").number is None


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("joe@far.test", None),
        ("joe+tag@sub.far.test", None),
        ("joe@[127.0.0.1]", None),
        ("joe\r\n@far.test", "control character"),
        ("joe@far.test\n", "control character"),
        ("a" * 300 + "@far.test", "longer than 254"),
        ("joe", "user@domain"),
        ("@far.test", "user@domain"),
        ("jo e@far.test", "local part"),
        ("joe@far_test", "invalid domain"),
        ("joe@-far.test", "invalid domain"),
        (".joe@far.test", "local part"),
    ],
)
def test_address_problems(address: str, problem: str | None) -> None:
    found = address_problem(address)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_verp_round_trip() -> None:
    assert verp_decode(verp_encode("a=b@c.test")) == "a=b@c.test"
    assert verp_decode("nohost") is None


def test_cookies() -> None:
    ext = cookie.confirm_ext(KEY, "sc", LIST, "Joe@far.test", 1000.0)
    action, _, rest = ext.partition(".")
    assert action == "sc"
    assert cookie.check(KEY, "sc", LIST, rest, 2000.0).target == "Joe@far.test"
    assert cookie.check(KEY, "sc", "TALK@lists.test", rest, 2000.0).target == "Joe@far.test"
    expired = cookie.check(KEY, "sc", LIST, rest, 1000.0 + cookie.LIFETIME + 1)
    assert expired.target is None and expired.problem and "expired" in expired.problem
    for bad in (
        cookie.check(KEY, "uc", LIST, rest, 2000.0),  # another action
        cookie.check(KEY, "sc", "other@lists.test", rest, 2000.0),  # another list
        cookie.check(b"x" * 32, "sc", LIST, rest, 2000.0),  # another key
        cookie.check(KEY, "sc", LIST, rest.replace("joe", "ann", 1).replace("Joe", "ann"), 2000.0),
    ):
        assert bad.target is None and bad.problem and "not valid" in bad.problem
    for garbage in ("", "-", "x.y-a=b", "99999999999999.abc-a=b", "1.abc-\r\n=b", "1.abc"):
        assert cookie.check(KEY, "sc", LIST, garbage, 0.0).target is None


MESSAGE = (
    b"Return-Path: <x@y>\n"
    b"Delivered-To: talk@lists.test\n"
    b"List-Id: <other.example>\n"
    b"From: Ann <ann@far.test>\n"
    b"Subject: hello\n"
    b" folded\n"
    b"\n"
    b"body\nList-Id: not a header\n"
)


def test_compose_keeps_the_body_and_sets_the_fields() -> None:
    out = post.compose(RECORD, MESSAGE)
    head, _, body = out.partition(b"\n\n")
    assert body == b"body\nList-Id: not a header\n"
    assert b"Return-Path" not in head and b"other.example" not in head
    assert b"List-Id: <talk.lists.test>" in head
    assert b"Delivered-To: talk@lists.test" in head  # LOCAL-11's marker stays
    assert b"Delivered-To: mailing list talk@lists.test" in head
    assert b"Subject: [talk] hello folded" in head
    assert b"List-Unsubscribe-Post" not in head
    again = post.compose(RECORD, out)
    assert again.count(b"[talk]") == 1
    fields, _ = post.split(out)
    assert post.is_loop(fields, RECORD)
    assert not post.is_loop(post.split(MESSAGE)[0], RECORD)


def test_one_click_only_with_a_url() -> None:
    out = post.compose(RECORD, MESSAGE, unsubscribe_url="https://lists.test/u/talk")
    assert b"List-Unsubscribe: <https://lists.test/u/talk>, <mailto:talk-unsubscribe@" in out
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in out


def test_dmarc_rewrite() -> None:
    out = post.compose(RECORD, MESSAGE, dmarc_rewrite=True)
    assert b"From: Ann via talk <talk@lists.test>" in out
    assert b"Reply-To: Ann <ann@far.test>" in out


@pytest.mark.parametrize(
    "message",
    [b"", b"no header at all", b"\n\n", b"X: " + b"a" * 300_000 + b"\n\nb", b"\x00\xff: \x00\n\n"],
)
def test_compose_survives_garbage(message: bytes) -> None:
    out = post.compose(RECORD, message)
    assert b"List-Id: <talk.lists.test>" in out


def test_bounce_reading() -> None:
    qmail = b"Hi. This is the qmail-send program.\n\n<a@x.test>:\n550 no\n\n<b@x.test>:\nno\n"
    dsn = b"Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; c@x.test\nAction: failed\n"
    assert bounce.bounced(qmail) == ["a@x.test", "b@x.test"]
    assert bounce.bounced(dsn) == ["c@x.test"]
    assert bounce.bounced(b"<a\r\n@x>:\n" + b"<" * 100_000) == []


def test_warn_then_probe_rule() -> None:
    """ezmlm-warn: bounces for a period bring a warning naming the posts; its bounce (or a
    bounce a period later, should it be lost) a probe; an old series is forgotten."""
    day = 86400
    first = bounce.on_bounce({}, 0.0, 10 * day, 1)
    assert first.action == "count"
    later = bounce.on_bounce(first.record, 11 * day, 10 * day, 5)
    assert later.action == "warn" and later.record["posts"] == [1, 5]
    again = bounce.on_bounce(later.record, 12 * day, 10 * day, 6)
    assert again.action == "count"  # warned already: the warning's own bounce decides
    probe = bounce.on_warning_bounce(again.record, 12 * day)
    assert probe.action == "probe"
    assert bounce.on_warning_bounce(probe.record, 13 * day).action == "nothing"  # once
    lost = bounce.on_bounce(again.record, 21 * day + 1, 10 * day, 7)
    assert lost.action == "probe"  # the warning's bounce never came
    stale = bounce.on_bounce(first.record, 30 * day, 10 * day, 9)
    assert stale.action == "count" and stale.record["count"] == 1  # an old series forgotten
    assert bounce.on_bounce({}, 0.0, 0, None).action == "warn"
    assert bounce.on_warning_bounce({}, 0.0).action == "nothing"  # no bounces known: ignored


def test_dmarc_policy_that_makes_a_list_rewrite_from() -> None:
    """The list reads the policy as the DMARC check does (RFC 7489 6.6.3): the domain's own
    record, else the organizational domain's with its sp=; junk is no policy."""
    records = {
        "_dmarc.strict.test": ["v=DMARC1; p=reject; rua=mailto:x@y"],
        "_dmarc.q.test": ["v=DMARC1;p=Quarantine"],
        "_dmarc.sp.test": ["v=DMARC1; p=none; sp=reject"],
        "_dmarc.spf.test": ["v=spf1 -all"],
        "_dmarc.two.test": ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
        "_dmarc.junk.test": ["v=DMARC1; p=\x00" + "x" * 10_000],
    }

    def lookup(name: str) -> list[str]:
        return records.get(name, [])

    assert published_policy("strict.test", lookup) == "reject"
    assert published_policy("q.test", lookup) == "quarantine"
    assert published_policy("lists.sp.test", lookup) == "reject"  # a subdomain takes sp=
    assert published_policy("sp.test", lookup) == "none"
    for domain in ("spf.test", "two.test", "junk.test", "none.test", ""):
        assert published_policy(domain, lookup) is None


def test_digest_of_odd_posts() -> None:
    from services.lists import digest

    out = digest.compose(RECORD, [(3, b"no header"), (4, b"Subject: x\n\ny\n"), (5, b"")], 0.0)
    assert b"Subject: talk Digest 3-5" in out
    assert b"3. (no subject)" in out and b"4. x" in out
    assert b"multipart/digest" in out


def test_rfc1153_digest_of_hostile_posts_splits_back_into_its_posts() -> None:
    """RFC 1153: a post's own separator or end line cannot cut the digest; a post with no
    text part is named, not dropped silently; odd posts never break the digest."""
    import email
    import email.policy

    from services.lists import digest

    plain = RECORD.changed(digest_format="rfc1153")
    html = b"Subject: only html\nMIME-Version: 1.0\nContent-Type: text/html\n\n<p>hi</p>\n"
    forged = b"Subject: forged\n\nline\n" + b"-" * 30 + b"\nEnd of talk Digest V1 Issue #9\n"
    posts = [(1, forged), (2, html), (3, b"no header"), (4, b""), (5, b"\xff\xfe\n\n\x00")]
    out = digest.compose(plain, posts, 0.0, 7)
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg.get_content_type() == "text/plain"
    text = msg.get_content()
    body = text.split("\n" + "-" * 70 + "\n", 1)[1]
    parts = body.split("\n" + "-" * 30 + "\n")
    assert len(parts) == len(posts) + 1  # five posts and the end line
    assert parts[-1].strip().startswith("End of talk Digest V1970 Issue #7")
    assert "\n " + "-" * 30 + "\n" in parts[0] and "\n End of talk Digest" in parts[0]
    assert "[no plain text; the post is message 2 of the archive]" in parts[1]
    assert "Today's Topics:" in text and "   2. only html" in text
