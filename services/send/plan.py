"""The pure decisions of qmail-send: preprocessing, delivery passes, results (SEND-01..SEND-33).

Nothing here touches NATS or storage: each function takes a state and returns the next one
(plus the jobs to publish), so every transition can be written as one compare-and-set.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from qmesh.contract.envelope import DOUBLE_BOUNCE_SENDER, split_address
from qmesh.contract.events import Job, LocalJob, RemoteJob, Result, Todo
from qmesh.contract.outcome import clip_report
from qmesh.contract.subjects import Channel
from qmesh.routing.classify import Local, RoutingRules, classify
from services.send.retry import LIFETIME_LINE, is_final_pass, next_attempt
from services.send.state import Failure, MessageState, Pass, Recipient


def preprocess(
    todo: Todo, rules: RoutingRules, directory_domains: Container[str], now: float
) -> MessageState:
    """SEND-01: info (birth = now, ARCH-12) and every recipient classified, all NOT DONE."""
    recipients = []
    for index, address in enumerate(todo.envelope.recipients):
        route = classify(address, rules, directory_domains)
        if isinstance(route, Local):
            recipients.append(
                Recipient(
                    index=index,
                    channel="local",
                    address=route.address,
                    original=route.original,
                    namespace=route.namespace,
                )
            )
        else:
            recipients.append(
                Recipient(
                    index=index, channel="remote", address=route.address, original=route.address
                )
            )
    return MessageState(
        id=todo.id,
        qp=todo.qp,
        sender=todo.envelope.sender,
        birth=now,
        origin=todo.origin,
        size=todo.size,
        smtputf8=todo.smtputf8,
        recipients=tuple(recipients),
    )


def delivery_sender(sender: str, recipient: str) -> str:
    """SEND-28 and ADDR-04: a sender ending in ``-@[]`` becomes per-recipient (VERP)."""
    if not sender.endswith("-@[]") or sender == DOUBLE_BOUNCE_SENDER:
        return sender
    prefix, dom = split_address(sender.removesuffix("-@[]"))
    box, host = split_address(recipient)
    return f"{prefix}{box}={host}@{dom}"


def start_pass(
    state: MessageState, channel: Channel, now: float, queuelifetime: int
) -> tuple[MessageState, list[Job]]:
    """SEND-20..SEND-24: one job per NOT DONE recipient; the next attempt fixed now.

    Returns the state unchanged and no jobs when nothing is pending or a pass is still in
    flight (SEND-22).
    """
    current = state.pass_of(channel)
    pending = state.pending(channel)
    if current.inflight or not pending:
        return state, []
    attempt = current.attempt + 1
    jobs: list[Job] = []
    for r in pending:
        common = {
            "id": state.id,
            "qp": state.qp,
            "sender": delivery_sender(state.sender, r.address),
            "recipient": r.address,
            "rcpt_index": r.index,
            "attempt": attempt,
            "size": state.size,
        }
        if channel == "local":
            assert r.namespace is not None
            jobs.append(LocalJob(namespace=r.namespace, **common))
        else:
            jobs.append(RemoteJob(smtputf8=state.smtputf8, **common))
    new_pass = Pass(
        attempt=attempt,
        started=now,
        inflight=tuple(r.index for r in pending),
        final=is_final_pass(state.birth, now, queuelifetime),
        next_at=next_attempt(state.birth, now, channel),
    )
    touched = {r.index for r in pending}
    recipients = tuple(
        r.model_copy(update={"attempts": r.attempts + 1}) if r.index in touched else r
        for r in state.recipients
    )
    return state.model_copy(
        update={"recipients": recipients, "passes": {**state.passes, channel: new_pass}}
    ), jobs


def result_is_early(state: MessageState, result: Result) -> bool:
    """A result of a pass not yet recorded: jobs go out before the record says so (SEND-22).

    It must be applied later, not dropped: dropping it would leave the recipient in flight
    for ever, with no new pass and no bounce.
    """
    return result.attempt > state.pass_of(result.channel).attempt


def apply_result(state: MessageState, result: Result, now: float) -> MessageState | None:
    """SEND-30: record one outcome; ``None`` when it changes nothing (stale or repeated)."""
    if not 0 <= result.rcpt_index < len(state.recipients):
        return None
    rcpt = state.recipients[result.rcpt_index]
    if rcpt.channel != result.channel or rcpt.done:
        return None
    current = state.pass_of(result.channel)
    this_pass = result.attempt == current.attempt and result.rcpt_index in current.inflight
    if not this_pass and result.outcome != "delivered":
        return None  # a late answer from an older pass; the current one decides
    bounces = state.bounces
    report = clip_report(result.report)
    done = True
    if result.outcome == "failed":
        bounces += (
            Failure(
                index=rcpt.index,
                address=rcpt.original,
                report=report,
                remote_host=result.remote_host,
                at=now,
            ),
        )
    elif result.outcome == "deferred":
        if current.final:  # SEND-24: the last pass turns a deferral into a failure
            text = clip_report(report.rstrip("\n") + "\n" + LIFETIME_LINE)
            bounces += (
                Failure(
                    index=rcpt.index,
                    address=rcpt.original,
                    report=text,
                    remote_host=result.remote_host,
                    at=now,
                    expired=True,
                ),
            )
        else:
            done = False
    # slices, not a loop over every recipient: a list post has thousands (lists #15)
    at = result.rcpt_index
    changed = rcpt.model_copy(update={"done": done, "last_report": report})
    recipients = (*state.recipients[:at], changed, *state.recipients[at + 1 :])
    passes = state.passes
    if this_pass:
        gone = current.inflight.index(rcpt.index)
        inflight = current.inflight[:gone] + current.inflight[gone + 1 :]
        passes = {**passes, result.channel: current.model_copy(update={"inflight": inflight})}
    return state.model_copy(update={"recipients": recipients, "bounces": bounces, "passes": passes})


def apply_results(
    state: MessageState, results: Sequence[Result], now: float
) -> tuple[MessageState, list[Result], list[Result]]:
    """SEND-30 for results of one message gathered together: :func:`apply_result` to each in
    order, so the state after them is written once (throughput #10, lists #15).

    Returns the state after them, the results that changed it, and the early ones
    (:func:`result_is_early`), which are left out to be applied later.
    """
    applied: list[Result] = []
    early: list[Result] = []
    for result in results:
        if result_is_early(state, result):
            early.append(result)
            continue
        after = apply_result(state, result, now)
        if after is not None:
            state = after
            applied.append(result)
    return state, applied, early


def due_channels(state: MessageState, now: float) -> list[Channel]:
    """Channels whose next pass may start now: something pending, nothing in flight."""
    due: list[Channel] = []
    for channel in ("local", "remote"):
        p = state.pass_of(channel)
        if (
            state.pending(channel)
            and not p.inflight
            and (p.next_at is None or p.next_at <= now or p.attempt == 0)
        ):
            due.append(channel)
    return due


def next_wakeup(
    state: MessageState,
    now: float = 0.0,
    held: Container[Channel] = (),
    recheck: float = 60.0,
) -> float | None:
    """When this message next needs attention (the earliest due pass), if ever.

    A held channel (concurrency 0, SEND-26) starts no pass, so its due time may be past for
    as long as the hold lasts; it is looked at again ``recheck`` seconds from ``now`` at the
    earliest, never at a time already past (that would attend the message in a loop).
    """
    times = []
    for ch, p in state.passes.items():
        if not state.pending(ch) or p.inflight or p.next_at is None:
            continue
        times.append(max(p.next_at, now + recheck) if ch in held else p.next_at)
    return min(times) if times else None


def held_channels(concurrencylocal: int, concurrencyremote: int) -> frozenset[Channel]:
    """The channels whose concurrency is 0: nothing is attempted on them (SEND-26)."""
    held: set[Channel] = set()
    if concurrencylocal == 0:
        held.add("local")
    if concurrencyremote == 0:
        held.add("remote")
    return frozenset(held)


def flush(state: MessageState, now: float, held: Container[Channel] = ()) -> MessageState | None:
    """SEND-25 (qmail's ALRM): every channel with NOT DONE recipients becomes due now.

    Birth is kept, so the schedule (SEND-20) and the lifetime (SEND-24) still count from it.
    A channel with deliveries in flight keeps its pass (SEND-22; qmail's ALRM moved only the
    jobs waiting for their retry time), and a held channel (concurrency 0, SEND-26) stays held.
    ``None`` when nothing changes: every such channel is due already.
    """
    passes = dict(state.passes)
    for channel, p in state.passes.items():
        if channel in held or p.inflight or not state.pending(channel):
            continue
        if p.next_at is not None and p.next_at > now:
            passes[channel] = p.model_copy(update={"next_at": now})
    if passes == state.passes:
        return None
    return state.model_copy(update={"passes": passes})


def due_now(state: MessageState, now: float, held: Container[Channel] = ()) -> bool:
    """Whether a pass of this message may start now on a channel that is not held."""
    return any(channel not in held for channel in due_channels(state, now))
