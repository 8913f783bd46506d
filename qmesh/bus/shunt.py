"""The shunt stream's entries (hardening #11, Mailman's shunt queue): what a consumer records
when it gives up on an event, and what ``qmesh queue shunted`` and ``requeue`` read back.

An entry is the event's payload, unchanged, with headers naming the subject it came from,
its stream sequence, how many times it was delivered, when it was shunted and the error's
class and first line of text (never a body or a password: events carry none, and the text is
clipped). ``Nats-Msg-Id`` is derived from the origin stream and sequence, so a consumer that
shunts twice (it died before its ack) records one entry. An event put back by ``requeue``
carries a ``Nats-Msg-Id`` of its own (:func:`requeue_headers`), by which a consumer knows it
for one that has been handled before (:func:`requeued`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nats.aio.msg import Msg

from qmesh.contract import subjects

ERROR_CHARS = 300
ORIGIN = "Qmesh-Origin"
DELIVERIES = "Qmesh-Deliveries"
ERROR = "Qmesh-Error"
SHUNTED_AT = "Qmesh-Shunted-At"
QUEUE_ID = "Qmesh-Queue-Id"
ORIGIN_SEQ = "Qmesh-Origin-Seq"


def error_text(err: BaseException) -> str:
    """``Class: first line``, clipped, with control characters replaced (a header value)."""
    text = (str(err).splitlines() or [""])[0]
    line = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return "".join(ch if ch.isprintable() else "?" for ch in line)[:ERROR_CHARS]


def queue_id_of(data: bytes) -> str:
    """The queue id of an event's payload, without trusting it: a short token or ``""``."""
    try:
        value = json.loads(data).get("id", "")
    except (ValueError, AttributeError):
        return ""
    text = str(value)
    return text if len(text) <= 64 and text.isprintable() and " " not in text else ""


def shunt_headers(msg: Msg, delivered: int, err: BaseException, now: float) -> dict[str, str]:
    meta = msg.metadata
    seq = meta.sequence.stream
    headers = {
        "Nats-Msg-Id": f"shunt.{meta.stream}.{seq}",
        ORIGIN: msg.subject,
        ORIGIN_SEQ: str(seq),
        DELIVERIES: str(delivered),
        SHUNTED_AT: f"{now:.3f}",
        ERROR: error_text(err),
    }
    qid = queue_id_of(msg.data)
    if qid:
        headers[QUEUE_ID] = qid
    return headers


REQUEUE_MSG_ID = f"requeue.{subjects.STREAM_SHUNT}."


def requeue_headers(seq: int) -> dict[str, str]:
    """The headers of the event that ``requeue`` puts back from shunt entry ``seq``: a fresh
    ``Nats-Msg-Id`` (the origin's duplicate window would drop the old one) that says where the
    event has been."""
    return {"Nats-Msg-Id": f"{REQUEUE_MSG_ID}{seq}"}


def requeued(headers: dict[str, str] | None) -> bool:
    """Whether an event was put back from the shunt by ``requeue``."""
    return (headers or {}).get("Nats-Msg-Id", "").startswith(REQUEUE_MSG_ID)


SHUNT_OF_ORIGIN = {
    subjects.TODO: subjects.SHUNT_TODO,
    subjects.JOB_LOCAL: subjects.SHUNT_LOCAL,
    subjects.JOB_REMOTE: subjects.SHUNT_REMOTE,
    subjects.RESULT_LOCAL: subjects.SHUNT_RESULT,
    subjects.RESULT_REMOTE: subjects.SHUNT_RESULT,
    subjects.JOB_LISTS: subjects.SHUNT_LISTS,
}


@dataclass(frozen=True, slots=True)
class Shunted:
    """One entry of ``QMESH_SHUNT`` as the CLI shows it."""

    seq: int
    origin: str
    at: float
    queue_id: str
    deliveries: int
    error: str

    @classmethod
    def read(cls, seq: int, headers: dict[str, str] | None) -> Shunted:
        h = headers or {}
        try:
            at = float(h.get(SHUNTED_AT, "0"))
        except ValueError:
            at = 0.0
        try:
            deliveries = int(h.get(DELIVERIES, "0"))
        except ValueError:
            deliveries = 0
        return cls(seq, h.get(ORIGIN, ""), at, h.get(QUEUE_ID, ""), deliveries, h.get(ERROR, ""))
