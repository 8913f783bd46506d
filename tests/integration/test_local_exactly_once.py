"""Hardening #10: local runs a recipient's rule once, even when it gets the job twice (a send
that died between publishing a pass and recording it, after a NATS restart made JetStream
forget the job's Nats-Msg-Id). Mailbox objects were idempotent already (ARCH-11); forwards
(LOCAL-23) and programs (LOCAL-18) are not, so the delivery ledger answers a repeated job from
its record. Each copy still gets its result, so send can finish the pass. A deferral leaves no
record: the next pass runs the rule again, as qmail does (LOCAL-17, ARCH-03)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_local import (
    Local,
    add_account,
    add_domain,
    deliver,
    domain,
    local,
    mailbox,
    settings,
    store_kind,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

__all__ = ["domain", "local", "settings", "store_kind"]


async def test_hardening_10_a_forward_published_twice_is_queued_once(
    local: Local, domain: str
) -> None:
    """LOCAL-23, ARCH-11: the same job twice, then again as a re-published pass (attempt 2),
    queue one forward, and the forwarded message lands once in the final mailbox."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob", rules={"": f"&carol@{domain}\n"})
    await add_account(local, domain, "carol")
    job, results, todos = await deliver(local, f"bob@{domain}", copies=2)
    _, again, later = await deliver(local, f"bob@{domain}", qid=job.id, attempt=2)
    [todo] = todos + later
    assert [(r.outcome, r.attempt) for r in results + again] == [
        ("delivered", 1),
        ("delivered", 1),
        ("delivered", 2),
    ]
    assert {r.report for r in results + again} == {f"did 0+1+0\nqp {todo.qp}\n"}
    for queued in todos + later:  # what send does with each forward
        for index, recipient in enumerate(queued.envelope.recipients):
            await deliver(local, recipient, qid=queued.id, rcpt_index=index)
    [content] = (await mailbox(local, domain, "carol")).values()
    assert content.endswith(b"hello world\n")


async def test_hardening_10_a_program_published_twice_runs_once(
    local: Local, domain: str, tmp_path: Path
) -> None:
    """LOCAL-18, ARCH-03: a program delivery cannot be undone, so it is not repeated."""
    runs = tmp_path / "runs"
    await add_domain(local, domain)
    await add_account(local, domain, "bob", rules={"": f"|echo ran >> {runs}\n"})
    job, results, _ = await deliver(local, f"bob@{domain}", copies=2)
    _, again, _ = await deliver(local, f"bob@{domain}", qid=job.id, attempt=2)
    assert [r.outcome for r in results + again] == ["delivered"] * 3
    assert runs.read_text() == "ran\n"


async def test_hardening_10_a_deferred_rule_runs_again_on_the_next_pass(
    local: Local, domain: str, tmp_path: Path
) -> None:
    """LOCAL-17, ARCH-03: a deferral records nothing; the next attempt runs the whole rule
    (the program again) and then forwards once."""
    runs, flag = tmp_path / "runs", tmp_path / "flag"
    rule = (
        f"|echo ran >> {runs}; test -e {flag} || {{ touch {flag}; exit 111; }}\n&carol@{domain}\n"
    )
    await add_domain(local, domain)
    await add_account(local, domain, "bob", rules={"": rule})
    job, [first], none = await deliver(local, f"bob@{domain}")
    assert (first.outcome, none) == ("deferred", [])
    _, [second, third], [todo] = await deliver(
        local, f"bob@{domain}", qid=job.id, attempt=2, copies=2
    )
    assert (second.outcome, third.outcome) == ("delivered", "delivered")
    assert third.report == second.report == f"did 0+1+1\nqp {todo.qp}\n"
    assert runs.read_text() == "ran\nran\n"


async def test_throughput_10_a_copy_pop3_moved_during_a_deferral_is_not_written_again(
    local: Local, domain: str, tmp_path: Path
) -> None:
    """ARCH-11, LOCAL-17: attempt 1 writes the mailbox, then a program defers; POP3 reads the
    message and moves it to ``cur/``; attempt 2 runs the rule again but does not put a second
    copy into ``new/``. Only a first attempt skips the look into ``cur/``."""
    flag = tmp_path / "flag"
    rule = f"./Maildir/\n|test -e {flag} || {{ touch {flag}; exit 111; }}\n"
    await add_domain(local, domain)
    await add_account(local, domain, "bob", rules={"": rule})
    job, [first], _ = await deliver(local, f"bob@{domain}")
    assert first.outcome == "deferred"
    [new] = await mailbox(local, domain, "bob")
    seen = new.replace("/new/", "/cur/") + ":2,S"
    await local.mail.copy(new, seen)  # what pop3d does with a message it has shown
    await local.mail.delete(new)
    _, [second], _ = await deliver(local, f"bob@{domain}", qid=job.id, attempt=2)
    assert (second.outcome, second.report) == ("delivered", "did 1+0+1\n")
    assert list(await mailbox(local, domain, "bob")) == [seen]
