"""The recipient check API (LOCAL-34, SMTPD-45): would delivery find a mailbox?

A core NATS request/reply service on :data:`qmesh.contract.subjects.RCPTCHECK`, in the queue
group ``local`` so the replicas share the questions. It performs the lookups of LOCAL-03,
LOCAL-04 and LOCAL-10 only: directory reads, no loop scan, no execution, no writes. An answer
that cannot be found within 2 s is ``tempfail``, never ``invalid``.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from qmesh.bus.connection import NatsConnection
from qmesh.bus.responder import Responder
from qmesh.contract import subjects
from qmesh.contract.envelope import split_address
from qmesh.contract.errors import Temporary
from qmesh.contract.events import RcptCheck, RcptVerdict, Verdict
from services.local import metrics
from services.local.lookup import DirectorySource, find_target
from services.local.resolve import has_rule

log = logging.getLogger(__name__)

ANSWER_WITHIN = 2.0  # seconds (LOCAL-34)
QUEUE_GROUP = "local"
MAX_PENDING = 256


async def verdict(directory: DirectorySource, question: RcptCheck) -> Verdict:
    """``valid``, ``invalid`` or ``tempfail`` for one recipient of a namespace."""
    if "@" not in question.recipient:
        return "invalid"
    local, _ = split_address(question.recipient)
    if not local:
        return "valid"  # LOCAL-01: delivered nowhere, successfully
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            t = await find_target(directory(), question.namespace, local)
    except (Temporary, TimeoutError):
        return "tempfail"
    return "valid" if has_rule(t) else "invalid"


class RcptCheckService(Responder):
    """The NATS side: one queue-group subscription, each question answered in its own task."""

    def __init__(self, conn: NatsConnection, directory: DirectorySource) -> None:
        super().__init__(
            conn,
            subject=subjects.RCPTCHECK,
            group=QUEUE_GROUP,
            drain=ANSWER_WITHIN + 1,
            max_pending=MAX_PENDING,
            overloaded=lambda: self._verdict("tempfail"),
        )
        self._directory = directory

    async def answer(self, request: bytes) -> bytes:
        try:
            question = RcptCheck.decode(request)
        except ValidationError:
            log.warning("rcptcheck.invalid_request", extra={"bytes": len(request)})
            return self._verdict("tempfail")
        try:
            answer = await verdict(self._directory, question)
        except Exception:
            log.exception("rcptcheck.failed")
            answer = "tempfail"
        return self._verdict(answer)

    @staticmethod
    def _verdict(answer: Verdict) -> bytes:
        metrics.RCPTCHECKS.labels(answer).inc()
        return RcptVerdict(verdict=answer).encode()
