"""Queue events: versioned, frozen pydantic models (ARCH-23, STYLE section 5).

Every event carries ``kind`` with a version. A consumer decodes with :func:`decode`, which
validates the payload as if it came from the Internet (ARCH-22): unknown fields, bad queue ids,
NUL in addresses and over-long values are refused. Each event names its own ``Nats-Msg-Id``
(ARCH-09) so that a retried publish is stored once.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from qmesh.contract import wire
from qmesh.contract.envelope import Address, Envelope
from qmesh.contract.ids import QueueId, parse_queue_id
from qmesh.contract.outcome import Outcome, clip_report
from qmesh.contract.subjects import Channel

QueueIdField = Annotated[QueueId, AfterValidator(parse_queue_id)]
Qp = Annotated[int, Field(ge=1, lt=2**53)]
Report = Annotated[str, Field(max_length=20_000), AfterValidator(clip_report)]
Namespace = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9.-]+$")]

OriginKind = Literal["network", "bounce", "alias", "account", "inject"]
Verdict = Literal["valid", "invalid", "tempfail"]


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def encode(self) -> bytes:
        return wire.dumps(self)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        return wire.loads(cls, data)


class Origin(BaseModel):
    """Who put the message into the queue (QUEUE-04)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: OriginKind
    account: str | None = Field(default=None, max_length=400)
    auth_user: str | None = Field(default=None, max_length=400)
    client_ip: str | None = Field(default=None, max_length=64)


class Todo(Event):
    """A committed message: its body is at ``mess/<id>`` (QUEUE-07)."""

    kind: Literal["qmesh.todo.v1"] = "qmesh.todo.v1"
    id: QueueIdField
    qp: Qp
    envelope: Envelope
    origin: Origin
    size: int = Field(ge=0)
    smtputf8: bool = False
    queued_at: float

    def msg_id(self) -> str:
        return f"{self.id}.todo"


class Job(Event):
    """One delivery of one recipient (SEND-27). ``sender`` is already VERP-expanded (SEND-28)."""

    id: QueueIdField
    qp: Qp
    sender: Address
    recipient: Address
    rcpt_index: int = Field(ge=0)
    attempt: int = Field(ge=1)
    size: int = Field(ge=0)

    @property
    def channel(self) -> Channel:
        raise NotImplementedError

    def msg_id(self) -> str:
        return f"{self.id}.{self.channel}.{self.rcpt_index}.{self.attempt}"


class LocalJob(Job):
    kind: Literal["qmesh.job.local.v1"] = "qmesh.job.local.v1"
    namespace: Namespace

    @property
    def channel(self) -> Channel:
        return "local"


class RemoteJob(Job):
    kind: Literal["qmesh.job.remote.v1"] = "qmesh.job.remote.v1"
    smtputf8: bool = False

    @property
    def channel(self) -> Channel:
        return "remote"


class Result(Event):
    """What became of one delivery: qmail's K/Z/D plus the report text (SEND-30)."""

    kind: Literal["qmesh.result.v1"] = "qmesh.result.v1"
    id: QueueIdField
    channel: Channel
    rcpt_index: int = Field(ge=0)
    attempt: int = Field(ge=1)
    outcome: Outcome
    report: Report
    remote_host: str | None = Field(default=None, max_length=300)

    @classmethod
    def for_job(cls, job: Job, outcome: Outcome, report: str, **extra: str | None) -> Result:
        return cls(
            id=job.id,
            channel=job.channel,
            rcpt_index=job.rcpt_index,
            attempt=job.attempt,
            outcome=outcome,
            report=report,
            **extra,
        )

    def msg_id(self) -> str:
        return f"{self.id}.{self.channel}.{self.rcpt_index}.{self.attempt}.result"


class RcptCheck(Event):
    """smtpd's question to local (SMTPD-45, LOCAL-34): would ``recipient`` find a mailbox?

    ``recipient`` is already classified local (after SEND-10..13); ``namespace`` is the domain
    whose directory records apply (SEND-16). Sent as a core NATS request to
    :data:`qmesh.contract.subjects.RCPTCHECK`.
    """

    kind: Literal["qmesh.rcptcheck.v1"] = "qmesh.rcptcheck.v1"
    recipient: Address
    namespace: Namespace


class RcptVerdict(Event):
    """local's answer to :class:`RcptCheck`: ``valid``, ``invalid`` or ``tempfail``."""

    kind: Literal["qmesh.rcptverdict.v1"] = "qmesh.rcptverdict.v1"
    verdict: Verdict


class FlushRequest(Event):
    """``qmesh queue flush`` (SEND-25, qmail's SIGALRM), a core NATS request to
    :data:`qmesh.contract.subjects.ADMIN_SEND_FLUSH`; one ``send`` of the queue group answers."""

    kind: Literal["qmesh.admin.send.flush.v1"] = "qmesh.admin.send.flush.v1"


class Flushed(Event):
    """send's answer to :class:`FlushRequest`.

    ``due`` messages have a pass due now (their next attempt was moved to now or had come
    already); ``queued`` records were looked at; ``failed`` could not be read or written, with
    the first ``error``.
    """

    kind: Literal["qmesh.admin.send.flushed.v1"] = "qmesh.admin.send.flushed.v1"
    due: int = Field(ge=0)
    queued: int = Field(ge=0)
    failed: int = Field(default=0, ge=0)
    error: str | None = Field(default=None, max_length=1000)
