"""local's adapter: one ``qmesh.job.local`` in, its effects, one ``qmesh.result.local`` out.

The handler reads the directory and the queued body, asks the pure modules what to do
(:mod:`~services.local.resolve`, :mod:`~services.local.delivery`), carries the steps out in
order (mailbox objects, programs, then one forward message, LOCAL-17) and publishes the
result before returning, so the job is acknowledged only once its result is durable. Every
delivery failure becomes a ``deferred`` or ``failed`` result.

Each recipient's record in the delivery ledger (:mod:`qmesh.bus.ledger`) is read before its
rule runs and its final outcome recorded after it; a deferral releases the record, so the next
pass runs the rule again (qmail's retry, ARCH-03). A job published twice is answered from the
record, so a forward is queued and a program run once (hardening #10): a rule with a forward or
a program line claims the recipient before its first step. Mailbox objects are rewritten under
the same names (ARCH-11), so a rule of mailbox lines only claims nothing, and a copy POP3
already moved to ``cur/`` is looked for only when an earlier attempt exists. Once the rule has
run, its record and its result are retried until NATS takes them.

Per delivery into a mailbox, local makes one ledger read, one read of the body, one store write
per mailbox line, then the ledger's final record, the result and the ack: three JetStream
writes, each fsynced by NATS (throughput #10). The directory's records come from a watched copy
(:mod:`qmesh.directory.cache`), read from the bucket only when the copy lacks them. The record
is written before the result, so a repeated job is answered from it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qmesh.bus.base import Publisher
from qmesh.bus.ledger import Attempt, Ledger, Recorded, until_done
from qmesh.contract import subjects
from qmesh.contract.errors import Permanent, QueueFailure, Temporary
from qmesh.contract.events import LocalJob, Result
from qmesh.contract.outcome import Outcome, result_log_level
from qmesh.contract.queue import enqueue
from qmesh.directory.records import Vacation
from qmesh.lists.handoff import Handoff, is_list_rule
from qmesh.mailbox.announce import announce_change
from qmesh.store.base import BlobNotFound, BlobStore, StoreUnavailable
from qmesh.store.keys import body_key
from services.local import metrics
from services.local.config import LocalConfig
from services.local.delivery import (
    LOOPING,
    Plan,
    delivered_to,
    forward_content,
    is_looping,
    maildir_content,
    plan,
    repeatable,
    split_recipient,
)
from services.local.dotqmail import Broken, Forward, Maildir, Program
from services.local.lookup import DirectorySource, find_target
from services.local.maildir import Mailbox
from services.local.program import run_program
from services.local.replied import Replied
from services.local.report import Counts, program_failure, success, truncate
from services.local.resolve import Target, find_rule
from services.local.vacation import compose, header_fields, should_reply

log = logging.getLogger(__name__)

NO_MESSAGE = "Unable to open message: it is not in the queue. (#4.3.0)"
UNREADABLE_MESSAGE = "Unable to read message. (#4.3.0)"


@dataclass
class _Transcript:
    """What the delivery has printed so far (program output) and what it has done."""

    parts: list[str] = field(default_factory=list)
    files: int = 0
    forwards: int = 0
    programs: int = 0

    @property
    def counts(self) -> Counts:
        return Counts(self.files, self.forwards, self.programs)

    def add(self, output: str) -> None:
        if output:
            self.parts.append(output if output.endswith("\n") else output + "\n")

    def text(self, tail: str) -> str:
        return "".join(self.parts) + tail


class _NotClaimed(Exception):
    """The ledger claim before a step that cannot be repeated failed: nothing has run, nothing
    is to be recorded; the job is tried again (``reason``, a ``Temporary``, says why)."""

    def __init__(self, reason: Temporary) -> None:
        super().__init__(reason.text)
        self.reason = reason


class LocalDelivery:
    def __init__(
        self,
        *,
        bus: Publisher,
        queue: BlobStore,
        mail: BlobStore,
        directory: DirectorySource,
        config: Callable[[], LocalConfig],
        ledger: Ledger,
        clock: Callable[[], float] = time.time,
        handoff: Handoff | None = None,
        replied: Replied | None = None,
    ) -> None:
        self._handoff = handoff  # mailing lists (issue #15)
        self._replied = replied  # vacation replies (issue 14)
        self._bus = bus
        self._ledger = ledger
        self._queue = queue
        self._mail = mail
        self._directory = directory
        self._config = config
        self._clock = clock

    async def handle(self, job: LocalJob) -> None:
        """The Consumer's handler: deliver once, publish the result, return (then the ack)."""
        started = time.monotonic()
        seen = await self._ledger.look(job)  # Temporary (Busy too): the Consumer retries
        if isinstance(seen, Recorded):
            recorded = seen
            await self._report(Result.for_job(job, recorded.outcome, recorded.report))
            log.info(
                "delivery.recorded",
                extra={
                    "msg_id": job.id,
                    "rcpt_index": job.rcpt_index,
                    "attempt": job.attempt,
                    "outcome": recorded.outcome,
                },
            )
            return
        try:
            async with self._ledger.held(job):
                outcome, report = await self.deliver(job, seen)
        except _NotClaimed as err:
            raise err.reason from None  # another worker has it, or NATS is away: retry
        except Exception:
            await self._ledger.release(job)  # a bug: the next try runs the rule again
            raise
        result = Result.for_job(job, outcome, truncate(report))
        settle = functools.partial(self._ledger.settle, job, outcome, result.report)
        await until_done(settle, "local.report_retry")
        await self._report(result)
        elapsed = time.monotonic() - started
        metrics.DELIVERIES.labels(outcome).inc()
        metrics.DELIVERY_SECONDS.observe(elapsed)
        level = result_log_level(outcome)
        if not log.isEnabledFor(level):  # a success is DEBUG: send logs it
            return
        log.log(
            level,
            "delivery.result",
            extra={
                "msg_id": job.id,
                "rcpt": job.recipient,
                "rcpt_index": job.rcpt_index,
                "attempt": job.attempt,
                "outcome": outcome,
                "report": result.report[:300],
                "duration_ms": int(elapsed * 1000),
            },
        )

    async def _report(self, result: Result) -> None:
        publish = functools.partial(
            self._bus.publish, subjects.RESULT_LOCAL, result.encode(), msg_id=result.msg_id()
        )
        await until_done(publish, "local.report_retry")

    async def deliver(self, job: LocalJob, seen: Attempt | None = None) -> tuple[Outcome, str]:
        """The outcome and report of one delivery (LOCAL-31); never raises for mail trouble.

        ``seen`` is what the ledger holds for the recipient: a rule that forwards or runs a
        program claims it first (:class:`_NotClaimed` if it cannot), and a first attempt
        skips the look for an earlier copy. Without it, nothing is claimed.
        """
        transcript = _Transcript()
        try:
            return "delivered", await self._deliver(job, transcript, seen)
        except Permanent as err:
            return "failed", transcript.text(err.text)
        except Temporary as err:
            return "deferred", transcript.text(err.text)

    async def _deliver(self, job: LocalJob, transcript: _Transcript, seen: Attempt | None) -> str:
        local, _ = split_recipient(job.recipient)
        if not local:
            return success(Counts(), None)  # LOCAL-01: "@domain" is delivered nowhere
        config = self._config()
        t = await find_target(self._directory(), job.namespace, local)
        message = await self._message(job)
        if is_looping(message, delivered_to(job.recipient)):
            raise Permanent(LOOPING)
        choice = find_rule(t, config.defaultdelivery)
        p = plan(
            sender=job.sender,
            recipient=job.recipient,
            namespace=job.namespace,
            t=t,
            choice=choice,
            programdelivery=config.programdelivery,
            when=self._clock(),
        )
        if self._handoff is not None and is_list_rule(choice.text):  # issue #15
            await self._handoff(job, choice.name, choice.default, forward_content(p.lines, message))
            return success(Counts(), None)
        if seen is not None and not repeatable(p):
            try:
                await self._ledger.take(job, seen)
            except Temporary as err:
                raise _NotClaimed(err) from err
        first = seen is not None and seen.first
        forwards = await self._run_steps(job, t, p, message, config, transcript, first)
        qp = await self._forward(job, p, forwards, message) if forwards else None
        if t.vacation is not None and t.account is not None and not t.dash:
            await self._vacation(job, f"{t.account}@{job.namespace}", t.vacation, p, message)
        return transcript.text(success(transcript.counts, qp))

    async def _vacation(
        self, job: LocalJob, address: str, vacation: Vacation, p: Plan, message: bytes
    ) -> None:
        """The account's vacation reply, once a while per sender, after its own delivery
        succeeded. A reply that cannot be sent is logged and left out: the message itself
        has been delivered, and delivering it again for a reply's sake would be worse."""
        fields = header_fields(message)
        if self._replied is None or not should_reply(job.sender, address, fields):
            return
        try:
            if not await self._replied.due(address, job.sender, vacation.days * 86400.0):
                return
            queued = await enqueue(
                self._queue,
                self._bus,
                sender="",  # RFC 3834 section 3.3: a reply to a reply bounces nowhere
                recipients=[job.sender],
                body=compose(address, job.sender, vacation, fields, self._clock()),
                origin=p.origin,
            )
        except (Temporary, QueueFailure) as err:
            log.warning(
                "delivery.vacation_failed",
                extra={"msg_id": job.id, "rcpt_index": job.rcpt_index, "reason": str(err)},
            )
            return
        log.info(
            "delivery.vacation_sent",
            extra={"msg_id": job.id, "rcpt_index": job.rcpt_index, "forward_id": queued.id},
        )

    async def _message(self, job: LocalJob) -> bytes:
        try:
            return await self._queue.get(body_key(job.id))
        except BlobNotFound as err:
            raise Temporary(NO_MESSAGE) from err
        except StoreUnavailable as err:
            raise Temporary(UNREADABLE_MESSAGE) from err

    async def _run_steps(
        self,
        job: LocalJob,
        t: Target,
        p: Plan,
        message: bytes,
        config: LocalConfig,
        transcript: _Transcript,
        first: bool,
    ) -> list[str]:
        """LOCAL-17: top to bottom, the first failure stops; forwards are only collected."""
        forwards: list[str] = []
        mailbox = None
        if t.account is not None:
            mailbox = Mailbox(self._mail, job.namespace, t.account, t.quota)
        for step in p.steps:
            if isinstance(step, Broken):
                raise Temporary(step.text)
            if isinstance(step, Forward):
                transcript.forwards += 1
                forwards.append(step.address)
            elif isinstance(step, Maildir):
                assert mailbox is not None  # domain rules have no Maildir steps (LOCAL-57)
                transcript.files += 1
                content = maildir_content(p.lines, message)
                await mailbox.deliver(
                    qid=job.id,
                    rcpt_index=job.rcpt_index,
                    instruction=step.index,
                    folder=step.folder,
                    content=content,
                    when=self._clock(),
                    first=first,
                )
                metrics.MAILBOX_BYTES.inc(len(content))
                await announce_change(self._bus, mailbox.domain, mailbox.account)  # IDLE (#13)
            elif isinstance(step, Program):
                transcript.programs += 1
                if await self._program(job, p, step, message, config, transcript):
                    break
        return forwards

    async def _program(
        self,
        job: LocalJob,
        p: Plan,
        step: Program,
        message: bytes,
        config: LocalConfig,
        transcript: _Transcript,
    ) -> bool:
        """Run one program line (LOCAL-18); True when it asked to stop (exit 99)."""
        ran = await run_program(
            step.command, message, p.env, limits=config.limits, scratch_root=config.scratch
        )
        metrics.PROGRAM_RUNS.labels(ran.result).inc()
        log.debug(  # a failing line is in the delivery's report and send's outcome line
            "delivery.program",
            extra={
                "msg_id": job.id,
                "rcpt_index": job.rcpt_index,
                "line": step.index,
                "result": ran.result,
                "status": ran.status,
                "timed_out": ran.timed_out,
            },
        )
        if ran.result == "permanent":
            raise Permanent(program_failure(ran.output, ran.status))
        if ran.result == "temporary":
            raise Temporary(program_failure(ran.output, ran.status, timed_out=ran.timed_out))
        transcript.add(ran.output)
        return ran.result == "stop"

    async def _forward(self, job: LocalJob, p: Plan, forwards: list[str], message: bytes) -> int:
        """LOCAL-23: one new message to every forward address, after everything else worked."""
        try:
            queued = await enqueue(
                self._queue,
                self._bus,
                sender=p.newsender,
                recipients=forwards,
                body=forward_content(p.lines, message),
                origin=p.origin,
            )
        except QueueFailure as err:
            text = f"Unable to forward message: {err.text}."
            raise (Permanent(text) if err.permanent else Temporary(text)) from err
        metrics.FORWARDS.inc()
        log.info(
            "delivery.forwarded",
            extra={
                "msg_id": job.id,
                "rcpt_index": job.rcpt_index,
                "forward_id": queued.id,
                "qp": queued.qp,
                "rcpt_count": len(forwards),
            },
        )
        return queued.qp
