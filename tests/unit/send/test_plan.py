"""send's pure decisions: SEND-01, SEND-20..SEND-30, ADDR-04, BOUNCE-01/12, Appendix A."""

from __future__ import annotations

import pytest

from qmesh.contract.envelope import Envelope
from qmesh.contract.events import Job, LocalJob, Origin, Result, Todo
from qmesh.contract.ids import QueueId
from qmesh.contract.outcome import Outcome
from qmesh.routing.classify import RoutingRules
from services.send.plan import (
    apply_result,
    apply_results,
    delivery_sender,
    due_channels,
    held_channels,
    next_wakeup,
    preprocess,
    result_is_early,
    start_pass,
)
from services.send.retry import LIFETIME_LINE, next_attempt
from services.send.state import MessageState

QID = QueueId("1732510000123.0123456789abcdef")
RULES = RoutingRules.build(
    envnoathost="mx.example.test",
    percenthack=[],
    locals=["mx.example.test", "example.test"],
    virtualdomains=[],
)
WEEK = 604800


def todo(*rcpts: str, sender: str = "joe@far.test") -> Todo:
    return Todo(
        id=QID,
        qp=4711,
        envelope=Envelope(sender=sender, recipients=rcpts),
        origin=Origin(kind="network"),
        size=100,
        queued_at=0.0,
    )


def result(job: Job, outcome: Outcome, report: str = "text") -> Result:
    return Result.for_job(job, outcome, report)


def applied(state: MessageState, res: Result, now: float) -> MessageState:
    """apply_result for a result that must change the state."""
    after = apply_result(state, res, now)
    assert after is not None
    return after


@pytest.mark.parametrize(
    ("k", "local", "remote"),
    [(1, 0, 0), (2, 100, 400), (3, 400, 1600), (4, 900, 3600), (10, 8100, 32400)],
)
def test_send_20_appendix_a_schedule(k: int, local: int, remote: int) -> None:
    """Attempt k happens at 100 (k-1)^2 (local) and 400 (k-1)^2 (remote) after birth."""
    t_local = t_remote = 0.0
    for _ in range(k - 1):
        t_local = next_attempt(0.0, t_local, "local")
        t_remote = next_attempt(0.0, t_remote, "remote")
    assert (t_local, t_remote) == (local, remote)


def test_send_20_late_pass_lands_on_next_square() -> None:
    assert next_attempt(0.0, 4000.0, "remote") == 6400


def test_send_01_preprocess_classifies_every_recipient_not_done() -> None:
    """ARCH-12: the birth time is the moment preprocessing finished."""
    state = preprocess(todo("a@example.test", "b@far.test", "a@example.test"), RULES, set(), 50.0)
    assert [(r.index, r.channel, r.done) for r in state.recipients] == [
        (0, "local", False),
        (1, "remote", False),
        (2, "local", False),
    ]  # ADDR-06 repeats kept
    assert state.birth == 50.0


def test_send_22_one_pass_per_channel_at_a_time() -> None:
    state = preprocess(todo("a@example.test", "b@example.test"), RULES, set(), 0.0)
    state, jobs = start_pass(state, "local", 0.0, WEEK)
    assert [(j.rcpt_index, j.attempt) for j in jobs] == [(0, 1), (1, 1)]
    assert isinstance(jobs[0], LocalJob) and jobs[0].namespace == "mx.example.test"
    again, none = start_pass(state, "local", 500.0, WEEK)
    assert none == [] and again == state
    assert jobs[0].msg_id() == f"{QID}.local.0.1"  # ARCH-09


def test_send_30_outcomes_and_next_pass() -> None:
    state = preprocess(
        todo("a@example.test", "b@example.test", "c@example.test"), RULES, set(), 0.0
    )
    state, jobs = start_pass(state, "local", 0.0, WEEK)
    state = applied(state, result(jobs[0], "delivered"), 1.0)
    state = applied(state, result(jobs[1], "failed", "Sorry. (#5.1.1)"), 1.0)
    assert state is not None
    assert not state.idle and due_channels(state, 1.0) == []
    state = applied(state, result(jobs[2], "deferred", "busy"), 1.0)
    assert state is not None and state.idle
    assert [r.done for r in state.recipients] == [True, True, False]
    assert [(f.index, f.report) for f in state.bounces] == [(1, "Sorry. (#5.1.1)")]
    assert next_wakeup(state) == 100.0  # SEND-20: second local attempt at b + 100
    assert due_channels(state, 99.0) == [] and due_channels(state, 100.0) == ["local"]
    state, jobs2 = start_pass(state, "local", 100.0, WEEK)
    assert [(j.rcpt_index, j.attempt) for j in jobs2] == [(2, 2)]


def test_send_30_stale_and_repeated_results_change_nothing() -> None:
    state = preprocess(todo("a@example.test"), RULES, set(), 0.0)
    state, jobs = start_pass(state, "local", 0.0, WEEK)
    done = apply_result(state, result(jobs[0], "delivered"), 1.0)
    assert done is not None and done.complete
    assert apply_result(done, result(jobs[0], "delivered"), 2.0) is None


def test_send_30_results_gathered_together_are_applied_in_order() -> None:
    """Results of one message settled together (throughput #10) end where applying them one
    at a time ends; a repeat changes nothing and a result of a pass not yet recorded is left
    out to be taken again."""
    state = preprocess(
        todo("a@example.test", "b@example.test", "c@example.test"), RULES, set(), 0.0
    )
    state, jobs = start_pass(state, "local", 0.0, WEEK)
    early = Result.for_job(jobs[2].model_copy(update={"attempt": 2}), "delivered", "later")
    gathered = [
        result(jobs[1], "failed", "Sorry. (#5.1.1)"),
        early,
        result(jobs[0], "delivered"),
        result(jobs[0], "delivered"),  # a repeat
        result(jobs[2], "deferred", "busy"),
    ]
    after, changed, left = apply_results(state, gathered, 1.0)
    one_by_one = state
    for res in (gathered[0], gathered[2], gathered[4]):
        one_by_one = applied(one_by_one, res, 1.0)
    assert after == one_by_one
    assert changed == [gathered[0], gathered[2], gathered[4]] and left == [early]
    assert after.idle and [r.done for r in after.recipients] == [True, True, False]
    assert apply_results(after, gathered[:1], 2.0) == (after, [], [])


def test_send_24_final_pass_turns_deferral_into_failure() -> None:
    state = preprocess(todo("b@far.test"), RULES, set(), 0.0)
    state, jobs = start_pass(state, "remote", WEEK + 1.0, WEEK)
    assert state.pass_of("remote").final
    state = applied(state, result(jobs[0], "deferred", "Connected but busy."), WEEK + 2.0)
    assert state is not None and state.complete
    assert state.bounces[0].report.endswith(LIFETIME_LINE)
    assert state.bounces[0].expired


@pytest.mark.parametrize(
    ("sender", "rcpt", "expected"),
    [
        ("owner-@list.example-@[]", "joe@x.test", "owner-joe=x.test@list.example"),  # ADDR-04
        ("plain@list.example", "joe@x.test", "plain@list.example"),
        ("", "joe@x.test", ""),
        ("#@[]", "joe@x.test", "#@[]"),
    ],
)
def test_send_28_verp_sender(sender: str, rcpt: str, expected: str) -> None:
    assert delivery_sender(sender, rcpt) == expected


def test_send_26_held_channel_past_due_is_looked_at_later_not_now() -> None:
    state, jobs = start_pass(preprocess(todo("b@far.test"), RULES, set(), 0.0), "remote", 0.0, WEEK)
    state = applied(state, result(jobs[0], "deferred", "busy"), 1.0)
    assert state.pass_of("remote").next_at == 400.0
    held = held_channels(concurrencylocal=10, concurrencyremote=0)
    assert held == {"remote"}
    # the due time has passed but the channel is held: no wake-up at a past time (a loop)
    assert next_wakeup(state, 1000.0, held, 60.0) == 1060.0
    assert next_wakeup(state, 100.0, held, 60.0) == 400.0  # not due yet: its own time
    assert next_wakeup(state, 1000.0) == 400.0  # not held: due, start it now
    assert held_channels(0, 5) == {"local"} and held_channels(1, 1) == set()


def test_send_22_a_result_before_its_pass_is_recorded_is_taken_later() -> None:
    """Jobs are published before the record says so; a fast failure must not be dropped."""
    state = preprocess(todo("b@far.test"), RULES, set(), 0.0)
    planned, jobs = start_pass(state, "remote", 0.0, WEEK)
    failed = result(jobs[0], "failed", "Sorry (#5.1.1)")
    assert result_is_early(state, failed)  # the record does not show the pass yet
    assert not result_is_early(planned, failed)
    assert applied(planned, failed, 1.0).bounces[0].report == "Sorry (#5.1.1)"


def test_send_27_each_job_names_one_recipient() -> None:
    state = preprocess(todo("a@far.test", "b@far.test", "a@example.test"), RULES, set(), 0.0)
    _, jobs = start_pass(state, "remote", 0.0, WEEK)
    assert [(j.rcpt_index, j.recipient) for j in jobs] == [(0, "a@far.test"), (1, "b@far.test")]
    _, jobs = start_pass(state, "local", 0.0, WEEK)
    assert [(j.rcpt_index, j.recipient) for j in jobs] == [(2, "a@example.test")]


def test_send_33_send_keeps_at_most_10000_bytes_of_a_report() -> None:
    state, jobs = start_pass(preprocess(todo("b@far.test"), RULES, set(), 0.0), "remote", 0.0, WEEK)
    long = "\u00e9" * 8000  # 16 000 bytes of UTF-8
    state = applied(state, result(jobs[0], "failed", long), 1.0)
    kept = state.bounces[0].report
    assert len(kept.encode()) <= 10_000 and long.startswith(kept) and len(kept) == 5000
