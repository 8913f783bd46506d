"""The flush command's pure decision (SEND-25): waiting passes due now, birth kept."""

from __future__ import annotations

from qmesh.contract.envelope import Envelope
from qmesh.contract.events import Origin, Result, Todo
from qmesh.contract.ids import QueueId
from qmesh.routing.classify import RoutingRules
from services.send.plan import (
    apply_result,
    due_channels,
    due_now,
    flush,
    next_wakeup,
    preprocess,
    start_pass,
)
from services.send.state import MessageState

QID = QueueId("1732510000123.0123456789abcdef")
RULES = RoutingRules.build(
    envnoathost="mx.example.test", percenthack=[], locals=["example.test"], virtualdomains=[]
)
WEEK = 604800


def queued(*rcpts: str) -> MessageState:
    todo = Todo(
        id=QID,
        qp=4711,
        envelope=Envelope(sender="joe@far.test", recipients=rcpts),
        origin=Origin(kind="network"),
        size=100,
        queued_at=0.0,
    )
    return preprocess(todo, RULES, set(), 0.0)


def deferred_remote() -> MessageState:
    """One remote recipient, deferred on the first pass: next attempt at 400 s (SEND-20)."""
    state, jobs = start_pass(queued("bob@far.test"), "remote", 0.0, WEEK)
    after = apply_result(state, Result.for_job(jobs[0], "deferred", "421 busy"), 5.0)
    assert after is not None and after.pass_of("remote").next_at == 400
    return after


def test_send_25_flush_makes_the_waiting_pass_due_now_and_keeps_birth() -> None:
    state = deferred_remote()
    assert due_channels(state, 100.0) == []
    flushed = flush(state, 100.0)
    assert flushed is not None
    assert flushed.pass_of("remote").next_at == 100.0
    assert flushed.birth == state.birth == 0.0
    assert flushed.pass_of("remote").attempt == 1  # the pass number goes on
    assert due_channels(flushed, 100.0) == ["remote"] and due_now(flushed, 100.0)
    assert next_wakeup(flushed) == 100.0
    # the pass started by the flush schedules from birth, as if it had been on time
    again, jobs = start_pass(flushed, "remote", 100.0, WEEK)
    assert [j.attempt for j in jobs] == [2]
    assert again.pass_of("remote").next_at == 400


def test_send_25_flush_leaves_a_pass_in_flight_alone() -> None:
    state, _ = start_pass(queued("bob@far.test"), "remote", 0.0, WEEK)
    assert flush(state, 100.0) is None
    assert not due_now(state, 100.0)


def test_send_25_flush_leaves_done_and_due_channels_unchanged() -> None:
    never_tried = queued("bob@far.test", "al@example.test")
    assert flush(never_tried, 1.0) is None  # no pass yet: due at once anyway (SEND-21)
    assert due_now(never_tried, 1.0)
    overdue = deferred_remote()
    assert flush(overdue, 500.0) is None and due_now(overdue, 500.0)


def test_send_25_flush_only_moves_the_channels_with_recipients_not_done() -> None:
    state, local_jobs = start_pass(queued("al@example.test", "bob@far.test"), "local", 0.0, WEEK)
    state, remote_jobs = start_pass(state, "remote", 0.0, WEEK)
    done = apply_result(state, Result.for_job(local_jobs[0], "delivered", "ok"), 1.0)
    assert done is not None
    waiting = apply_result(done, Result.for_job(remote_jobs[0], "deferred", "busy"), 2.0)
    assert waiting is not None
    flushed = flush(waiting, 50.0)
    assert flushed is not None
    assert flushed.pass_of("local") == waiting.pass_of("local")  # all DONE: untouched
    assert flushed.pass_of("remote").next_at == 50.0


def test_send_26_flush_keeps_a_held_channel_held() -> None:
    state = deferred_remote()
    assert flush(state, 100.0, held={"remote"}) is None
    assert not due_now(state, 500.0, held={"remote"})
