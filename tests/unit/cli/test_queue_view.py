"""What ``qmesh queue stat|list|show|flush`` print (qmail-qstat, qmail-qread, SEND-25).

The records are made by send's own pure functions and encoded as send stores them, so a
change of send's record that the commands cannot read fails here.
"""

from __future__ import annotations

import argparse

import pytest

from qmesh.cli.queue import (
    QueueRecord,
    Unreadable,
    duration,
    format_flushed,
    format_list,
    format_show,
    format_stat,
    printable,
    read_record,
    utc,
)
from qmesh.cli.queueadmin import add_queue_commands
from qmesh.contract.envelope import Envelope
from qmesh.contract.events import Flushed, Origin, Result, Todo
from qmesh.contract.ids import QueueId
from qmesh.routing.classify import RoutingRules
from services.send.plan import apply_result, preprocess, start_pass
from services.send.state import MessageState

RULES = RoutingRules.build(
    envnoathost="mx.example.test",
    percenthack=[],
    locals=["mx.example.test", "example.test"],
    virtualdomains=[("virt.example.test", "carol")],
)
BIRTH = 1732510000.0  # 2024-11-25 04:46:40 UTC
OLD = QueueId("1732510000123.0123456789abcdef")
NEW = QueueId("1732510099000.fedcba9876543210")


def todo(qid: QueueId, *rcpts: str) -> Todo:
    return Todo(
        id=qid,
        qp=4711,
        envelope=Envelope(sender="joe@far.test", recipients=rcpts),
        origin=Origin(kind="network", client_ip="192.0.2.7"),
        size=1234,
        queued_at=BIRTH,
    )


def changed(state: MessageState | None) -> MessageState:
    assert state is not None
    return state


def busy_message() -> MessageState:
    """Four recipients: delivered, deferred, failed (not yet bounced), and in flight."""
    state = preprocess(
        todo(OLD, "a@example.test", "b@far.test", "c@far.test", "info@virt.example.test"),
        RULES,
        set(),
        BIRTH,
    )
    state, local = start_pass(state, "local", BIRTH, 604800)
    state, remote = start_pass(state, "remote", BIRTH, 604800)
    state = changed(apply_result(state, Result.for_job(local[0], "delivered", "did 1/"), BIRTH))
    deferral = "Connected to 192.0.2.9 but greeting failed.\nRemote host said: 421 busy\x1b[31m"
    state = changed(apply_result(state, Result.for_job(remote[0], "deferred", deferral), BIRTH))
    failure = Result.for_job(remote[1], "failed", "No mailbox here. (#5.1.1)", remote_host="mx9")
    return changed(apply_result(state, failure, BIRTH + 4))


def as_read(state: MessageState) -> QueueRecord:
    """Encoded as send stores it, read as the commands read it."""
    record = read_record(state.id, state.encode())
    assert isinstance(record, QueueRecord)
    return record


def test_qmail_qstat_lines_count_unpreprocessed_messages_in_the_queue() -> None:
    assert format_stat(3, 1) == (
        "messages in queue: 4\nmessages in queue but not yet preprocessed: 1\n"
    )
    assert format_stat(0, 0) == (
        "messages in queue: 0\nmessages in queue but not yet preprocessed: 0\n"
    )


def test_qmail_qread_block_per_message_oldest_first() -> None:
    newer = as_read(preprocess(todo(NEW, "x@far.test"), RULES, set(), BIRTH + 99))
    broken = Unreadable("1732500000000.ffffffffffffffff", "kind: Input should be ...")
    text = format_list([newer, as_read(busy_message()), broken], now=BIRTH + 65)
    assert text == (
        "1732500000000.ffffffffffffffff  unreadable record (kind: Input should be ...)\n"
        "1732510000123.0123456789abcdef  2024-11-25 04:46:40 UTC  age 1m05s  1234 bytes"
        "  from <joe@far.test>\n"
        "  local   done                                     a@example.test\n"
        "  remote  not done   next 2024-11-25 04:53:20 UTC  b@far.test\n"
        "  remote  done                                     c@far.test\n"
        "  local   in flight  next 2024-11-25 04:48:20 UTC  carol-info@mx.example.test\n"
        "1732510099000.fedcba9876543210  2024-11-25 04:48:19 UTC  age 0s  1234 bytes"
        "  from <joe@far.test>\n"
        "  remote  not done   next now                      x@far.test\n"
    )


def test_list_of_an_empty_queue_is_empty() -> None:
    assert format_list([], now=BIRTH) == ""


def test_show_prints_the_whole_record_and_the_failures_for_the_bounce() -> None:
    text = format_show(as_read(busy_message()), now=BIRTH + 65)
    assert text.startswith(
        "message 1732510000123.0123456789abcdef\n"
        "  qp        4711\n"
        "  born      2024-11-25 04:46:40 UTC (age 1m05s)\n"
        "  sender    <joe@far.test>\n"
        "  origin    network, client 192.0.2.7\n"
        "  size      1234 bytes\n"
        "  smtputf8  no\n"
        "  bounces   0 sent\n"
        "channels:\n"
        "  local   pass 1 started 2024-11-25 04:46:40 UTC; 1 not done; in flight: 3;"
        " next attempt 2024-11-25 04:48:20 UTC (in 35s)\n"
        "  remote  pass 1 started 2024-11-25 04:46:40 UTC; 1 not done; in flight: none;"
        " next attempt 2024-11-25 04:53:20 UTC (in 5m35s)\n"
        "recipients:\n"
    )
    assert (
        "  1   remote  not done   b@far.test\n"
        "        attempts   1\n"
        "        last report:\n"
        "          Connected to 192.0.2.9 but greeting failed.\n"
        "          Remote host said: 421 busy\\x1b[31m\n"
    ) in text
    assert (
        "  3   local   in flight  carol-info@mx.example.test\n"
        "        original   info@virt.example.test\n"
        "        namespace  mx.example.test\n"
    ) in text
    assert text.endswith(
        "failures not yet bounced:\n"
        "  2   <c@far.test> at 2024-11-25 04:46:44 UTC, host mx9\n"
        "        No mailbox here. (#5.1.1)\n"
    )


def test_a_record_of_another_version_is_unreadable_not_a_crash() -> None:
    data = busy_message().encode().replace(b"qmesh.queue.message.v1", b"qmesh.queue.message.v2")
    found = read_record(OLD, data)
    assert isinstance(found, Unreadable) and found.reason.startswith("kind:")
    assert isinstance(read_record(OLD, b"{not json"), Unreadable)


def test_a_field_send_adds_later_is_ignored() -> None:
    data = busy_message().encode().replace(b'{"kind"', b'{"later":1,"kind"', 1)
    assert isinstance(read_record(OLD, data), QueueRecord)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain@example.test", "plain@example.test"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("tab\there", "tab\\x09here"),
        ("c1\x9bx", "c1\\x9bx"),
        ("latin\udce9", "latin\\xe9"),
        ("ünïcode", "ünïcode"),
    ],
)
def test_addresses_and_reports_cannot_drive_the_terminal(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(-5, "0s"), (45, "45s"), (400, "6m40s"), (3720, "1h02m"), (3 * 86400 + 4 * 3600, "3d04h")],
)
def test_durations(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_times_are_utc() -> None:
    assert utc(0) == "1970-01-01 00:00:00 UTC"


def test_flush_answer() -> None:
    assert format_flushed(Flushed(due=2, queued=5)) == (
        "flushed: 2 of 5 messages due for delivery now\n"
    )
    assert format_flushed(Flushed(due=1, queued=3, failed=2, error="kv\x07 down")) == (
        "flushed: 1 of 3 messages due for delivery now\nnot flushed: 2 (kv\\x07 down)\n"
    )


def test_queue_command_forms_parse() -> None:
    parser = argparse.ArgumentParser(prog="qmesh")
    add_queue_commands(parser.add_subparsers(dest="command", required=True))
    assert parser.parse_args(["queue", "stat"]).action == "stat"
    assert parser.parse_args(["queue", "list"]).action == "list"
    assert parser.parse_args(["queue", "show", str(OLD)]).id == OLD
    assert parser.parse_args(["queue", "flush"]).timeout == 10.0
    assert parser.parse_args(["queue", "flush", "--timeout", "2.5"]).timeout == 2.5
    for bad in (["queue", "show", "../etc"], ["queue", "flush", "--timeout", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
