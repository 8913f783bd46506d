"""``enqueue()``: the only way into the queue (ARCH-01, ARCH-09, ARCH-10, QUEUE-01..07).

Order is the whole point, as in qmail-queue: (1) the body, with its Received line, is written
create-only to ``mess/<id>``; (2) the todo event is published with ``Nats-Msg-Id`` and
acknowledged by JetStream; (3) only then does the caller hear success. A failure in (1) or (2)
is a temporary failure with qmail's text; a body whose todo never made it is an orphan that
cleanup removes after 36 hours (CLEAN-03), never a delivery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from qmesh.bus.base import Publisher, PublishFailed
from qmesh.contract import subjects
from qmesh.contract.dates import qmail_date
from qmesh.contract.envelope import Envelope
from qmesh.contract.errors import QueueFailure
from qmesh.contract.events import Origin, Todo
from qmesh.contract.ids import QueueId, new_qp, new_queue_id
from qmesh.store.base import BlobExists, BlobNotFound, BlobStore, Body, StoreUnavailable
from qmesh.store.keys import body_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Queued:
    """A committed message: smtpd's ``250 ok <at> qp <qp>`` (SMTPD-57)."""

    id: QueueId
    qp: int
    size: int
    at: float


def invoked_how(origin: Origin) -> str:
    """The ``<how>`` of the enqueue Received line (QUEUE-03)."""
    match origin.kind:
        case "network":
            return "from network"
        case "bounce":
            return "for bounce"
        case "alias":
            return "by alias"
        case "account":
            return f"by account {origin.account}"
        case "inject":
            return "by inject"


def received_line(qp: int, origin: Origin, when: float) -> bytes:
    """``Received: (qmail <qp> invoked <how>); <date>`` LF (QUEUE-03)."""
    return f"Received: (qmail {qp} invoked {invoked_how(origin)}); {qmail_date(when)}\n".encode()


async def _prepend(head: bytes, body: Body) -> AsyncIterator[bytes]:
    yield head
    if isinstance(body, bytes | bytearray | memoryview):
        yield bytes(body)
        return
    assert isinstance(body, AsyncIterable)
    async for chunk in body:
        yield chunk


async def _withdraw(blobs: BlobStore, qid: QueueId) -> None:
    """Remove the body of a message the client is told was not taken (4xx).

    A todo whose publish timed out may still reach the stream later (the NATS client sends what
    it holds once it has reconnected); send drops a todo that has no body and no record, so the
    message is not delivered behind the client's back, and the client's retry is not a second
    copy (hardening #9). If the store fails too, the cleaner removes the body later (CLEAN-03)."""
    try:
        await blobs.delete(body_key(qid))
    except (StoreUnavailable, BlobNotFound) as err:
        log.warning("enqueue.withdraw_failed", extra={"msg_id": qid, "reason": str(err)})


async def enqueue(
    blobs: BlobStore,
    bus: Publisher,
    *,
    sender: str,
    recipients: Sequence[str],
    body: Body,
    origin: Origin,
    smtputf8: bool = False,
    clock: Callable[[], float] = time.time,
) -> Queued:
    """Queue a message in stored form; raise :class:`QueueFailure` unless it is durable."""
    try:
        envelope = Envelope(sender=sender, recipients=tuple(recipients))
    except ValidationError as err:
        raise QueueFailure(11) from err
    now = clock()
    qid = new_queue_id(now)
    qp = new_qp()
    try:
        size = await blobs.put(
            body_key(qid),
            _prepend(received_line(qp, origin, now), body),
            metadata={"qp": str(qp)},
            create_only=True,
        )
    except (StoreUnavailable, BlobExists) as err:
        log.warning("enqueue.store_failed", extra={"msg_id": qid, "reason": str(err)})
        raise QueueFailure(53) from err
    todo = Todo(
        id=qid,
        qp=qp,
        envelope=envelope,
        origin=origin,
        size=size,
        smtputf8=smtputf8,
        queued_at=now,
    )
    try:
        await bus.publish(subjects.TODO, todo.encode(), msg_id=todo.msg_id())
    except PublishFailed as err:
        log.warning("enqueue.publish_failed", extra={"msg_id": qid, "reason": str(err)})
        await _withdraw(blobs, qid)
        raise QueueFailure(56) from err
    log.debug(  # send's new_msg and info_msg are the message's arrival at INFO (SEND-40)
        "enqueue.queued",
        extra={
            "msg_id": qid,
            "qp": qp,
            "size": size,
            "origin": origin.kind,
            "rcpt_count": len(envelope.recipients),
        },
    )
    return Queued(id=qid, qp=qp, size=size, at=now)
