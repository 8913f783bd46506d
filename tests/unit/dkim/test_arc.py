"""ARC sealing of forwarded mail: which messages are sealed, by whom, and with which cv; the
sets made verify with dkimpy's arc_verify (RFC 8617 sections 4.2, 5.1; issue 11)."""

from __future__ import annotations

import functools

import dkim
import pytest

from qmesh.dkim.arc import Decision, SealError, decide, fields, instances, seal
from qmesh.dkim.keyring import Selector
from qmesh.dkim.keys import generate, parse_key

ME = "mx.fwd.test"


@functools.cache
def selector(domain: str, name: str = "a1", algorithm: str = "rsa") -> Selector:
    return Selector(domain, name, parse_key(generate(algorithm)))  # type: ignore[arg-type]


def signers(domain: str) -> list[Selector]:
    return {
        "fwd.test": [selector("fwd.test"), selector("fwd.test", "e1", "ed25519")],
        "list.test": [selector("list.test")],
        "second.test": [selector("second.test")],
        "edonly.test": [selector("edonly.test", "e1", "ed25519")],
    }.get(domain, [])


def dns(name: bytes, timeout: int = 5) -> bytes | None:
    """The DKIM TXT records of every test key, as a DNS answer would give them."""
    sel, _, domain = name.decode().rstrip(".").partition("._domainkey.")
    for s in signers(domain):
        if s.selector == sel:
            return s.key.record().encode()
    return None


def own_set_verifies(out: bytes, message: bytes, instance: int) -> bool:
    """A cv=fail seal covers its own set only (dkimpy seals it so): verify that set alone,
    on ``message`` with its earlier ARC fields taken away."""
    made = out[: len(out) - len(message)]
    head, _, body = message.partition(b"\n\n")
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        dropping = line.lower().startswith(b"arc-")
        if not dropping:
            kept.append(line)
    arc = dkim.ARC(made + b"\n".join(kept) + b"\n\n" + body)
    _, headers = arc.sorted_arc_headers()
    found = arc.verify_instance(headers, instance, dnsfunc=dns)
    return bool(found["as-valid"] and found["ams-valid"])


def ar(value: str = "spf=pass smtp.mailfrom=joe@orig.test; dkim=pass header.d=orig.test") -> bytes:
    return f"Authentication-Results: {ME}; {value}\n".encode()


BODY = (
    b"Received: from orig.test by mx.fwd.test\n"
    b"From: Joe <joe@orig.test>\n"
    b"To: bob@fwd.test\n"
    b"Subject: forwarded\n"
    b"Date: Sun, 06 Dec 2026 02:00:00 +0000\n"
    b"Message-ID: <arc-1@orig.test>\n"
    b"\n"
    b"hello\n"
)


def forwarded(extra: bytes = b"", dt: bytes = b"Delivered-To: bob@fwd.test\n") -> bytes:
    """local's forward: its Delivered-To line on top of what smtpd queued (A-R first)."""
    return dt + ar() + extra + BODY


def sealed(message: bytes, me: str = ME) -> tuple[Decision, bytes]:
    decision = decide(fields(message), me, signers)
    return decision, seal(message, decision, me) + message


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"Delivered-To: bob@fwd.test\n" + BODY, "not_checked"),  # never through our door
        (
            b"Delivered-To: bob@fwd.test\nAuthentication-Results: other.test; spf=pass\n" + BODY,
            "not_checked",
        ),
        (ar() + BODY, "not_forwarded"),  # straight through smtpd to remote: a relay
        (ar() + b"Delivered-To: bob@fwd.test\n" + BODY, "not_forwarded"),  # from outside
        (b"Delivered-To: bob@nokey.test\n" + ar() + BODY, "no_key"),
        (b"Delivered-To: bob@edonly.test\n" + ar() + BODY, "no_key"),  # ARC is rsa-sha256
        (b"Delivered-To: not an address\n" + ar() + BODY, "not_forwarded"),
        (b"Delivered-To: bob@-bad-.test\n" + ar() + BODY, "not_forwarded"),
    ],
)
def test_which_messages_are_sealed(message: bytes, reason: str) -> None:
    decision = decide(fields(message), ME, signers)
    assert decision.reason == reason
    assert decision.selector is None
    assert seal(message, decision, ME) == b""


def test_a_forward_is_sealed_by_the_forwarding_domain_with_its_rsa_key() -> None:
    decision, out = sealed(forwarded())
    assert decision == Decision("sealed", selector("fwd.test"), "fwd.test", "none", 1)
    assert out.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=fwd.test; s=a1;")
    cv, _, reason = dkim.arc_verify(out, dnsfunc=dns)
    assert (cv, reason) == (b"pass", "success")
    aar = out[out.index(b"ARC-Authentication-Results:") :].split(b"\nDelivered-To", 1)[0]
    assert b"i=1; mx.fwd.test;" in aar and b"spf=pass" in aar and b"arc=none" in aar


def test_a_list_post_is_sealed_by_the_list_domain() -> None:
    post = (
        b"List-Id: <team.list.test>\nDelivered-To: mailing list team@list.test\n"
        b"Delivered-To: team@list.test\n" + ar() + BODY
    )
    decision, out = sealed(post)
    assert (decision.domain, decision.cv) == ("list.test", "none")
    assert dkim.arc_verify(out, dnsfunc=dns)[0] == b"pass"


def test_the_authserv_id_is_compared_without_case_and_with_a_comment() -> None:
    message = b"Delivered-To: bob@fwd.test\nAuthentication-Results: MX.Fwd.Test (qmesh); spf=none\n"
    decision, out = sealed(message + BODY)
    assert decision.reason == "sealed"
    assert dkim.arc_verify(out, dnsfunc=dns)[0] == b"pass"


def test_a_second_forwarder_adds_instance_2_with_cv_pass() -> None:
    _, first = sealed(forwarded())
    hop2 = (
        b"Delivered-To: ann@second.test\n"
        b"Authentication-Results: mx.second.test; dkim=pass header.d=fwd.test; arc=pass\n" + first
    )
    decision, out = sealed(hop2, "mx.second.test")
    assert (decision.domain, decision.instance, decision.cv) == ("second.test", 2, "pass")
    assert out.startswith(b"ARC-Seal: i=2; cv=pass; a=rsa-sha256; d=second.test;")
    cv, results, reason = dkim.arc_verify(out, dnsfunc=dns)
    assert (cv, reason) == (b"pass", "success")
    assert [r["instance"] for r in results] == [2, 1]


@pytest.mark.parametrize("claim", ["arc=fail", "arc=none", "", "arc=pass; arc=pass"])
def test_an_existing_chain_the_door_did_not_pass_is_sealed_cv_fail(claim: str) -> None:
    _, first = sealed(forwarded())
    value = "dkim=pass header.d=fwd.test" + (f"; {claim}" if claim else "")
    hop2 = (
        b"Delivered-To: ann@second.test\n"
        + f"Authentication-Results: mx.second.test; {value}\n".encode()
        + first
    )
    decision, out = sealed(hop2, "mx.second.test")
    assert (decision.instance, decision.cv) == (2, "fail")
    assert out.startswith(b"ARC-Seal: i=2; cv=fail;")
    assert own_set_verifies(out, hop2, 2)


MALFORMED = [
    b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x.test; s=s; b=!!!not base64\n",
    b"ARC-Seal: i=1; this is not a tag list at all ;;;==\n",
    b"ARC-Seal: i=1\nARC-Seal: i=1\nARC-Message-Signature: i=1\n"
    b"ARC-Authentication-Results: i=1; x\n",
    b"ARC-Seal: i=2; cv=pass\nARC-Message-Signature: i=2\nARC-Authentication-Results: i=2; x\n",
    b"ARC-Seal: i=1; cv=fail\nARC-Message-Signature: i=1\nARC-Authentication-Results: i=1; x\n",
    b"ARC-Seal: i=1; cv=none\nARC-Message-Signature: i=1\nARC-Authentication-Results: i=1; x\n"
    b"ARC-Seal: no instance\n",
    "ARC-Seal: i=1; cv=none; d=\u00e9.test\n".encode(),
    b"ARC-Seal: i=1; cv=none; b=\xff\xfe\n",
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_a_malformed_chain_is_sealed_cv_fail_and_never_crashes(bad: bytes) -> None:
    """Hostile input: the door said arc=pass, the fields say otherwise; our set still
    verifies on its own (RFC 8617 section 5.1.2: a failed chain's seal covers its own set)."""
    message = b"Delivered-To: bob@fwd.test\n" + ar("dkim=none; arc=pass") + bad + BODY
    decision, out = sealed(message)
    assert decision.cv == "fail"
    assert out.startswith(b"ARC-Seal: i=%d; cv=fail;" % decision.instance)
    assert out.endswith(message)
    assert own_set_verifies(out, message, decision.instance)


def test_arc_fields_without_a_readable_instance_are_not_sealed() -> None:
    message = forwarded(b"ARC-Seal: garbage\nARC-Message-Signature: nothing\n")
    assert decide(fields(message), ME, signers).reason == "unreadable_chain"


def test_a_chain_at_instance_50_is_not_extended() -> None:
    extra = b"".join(
        b"ARC-Seal: i=%d; cv=pass\nARC-Message-Signature: i=%d\n"
        b"ARC-Authentication-Results: i=%d; x\n" % (i, i, i)
        for i in range(1, 51)
    )
    assert decide(fields(forwarded(extra)), ME, signers).reason == "chain_too_long"


def test_instances_are_read_as_dkimpy_reads_them() -> None:
    sets, unreadable = instances(
        [("arc-seal", "i=3; cv=pass"), ("arc-seal", "cv=none;i=1"), ("arc-seal", "x")]
    )
    assert sorted(sets) == [1, 3] and unreadable


def test_a_huge_and_binary_header_block_gives_a_clear_decision() -> None:
    junk = b"X-Junk: " + bytes(range(1, 256)).replace(b"\n", b"") * 40000 + b"\n"
    message = b"Delivered-To: bob@fwd.test\n" + ar() + junk * 3 + BODY
    decision, out = sealed(message)
    assert decision.reason == "sealed"
    assert out.endswith(message)


@pytest.mark.parametrize(
    "value",
    [
        "mx.fwd.test; spf=pass smtp.mailfrom=\udcff\udcfe@orig.test",
        "mx.fwd.test; dkim=pass header.d=\udce9.test; arc=pass",
        "mx.fwd.test; ;;; ===",
        "mx.fwd.test",
        "mx.fwd.test; arc=" + "x" * 5000,
        "mx.fwd.test (" + "(" * 300 + "; spf=pass",
    ],
)
def test_hostile_authentication_results_never_crash(value: str) -> None:
    head = b"Delivered-To: bob@fwd.test\nAuthentication-Results: "
    message = head + value.encode("utf-8", "surrogateescape") + b"\n" + BODY
    decision = decide(fields(message), ME, signers)
    try:
        made = seal(message, decision, ME)
    except SealError:
        return
    if made:
        assert dkim.arc_verify(made + message, dnsfunc=dns)[0] == b"pass"
