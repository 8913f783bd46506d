"""The recipient check client (SMTPD-45): a core NATS request to ``local`` (LOCAL-34).

No answer within :data:`ASK_WITHIN` seconds, no ``local`` listening, no NATS connection or an
answer that does not parse: ``tempfail``, so a directory outage is a 451, never a 550.
"""

from __future__ import annotations

import logging

import nats.errors
from pydantic import ValidationError

from qmesh.bus.connection import NatsConnection, NotConnected
from qmesh.contract import subjects
from qmesh.contract.events import RcptCheck, RcptVerdict, Verdict

log = logging.getLogger(__name__)

ASK_WITHIN = 2.0


class NatsRecipientCheck:
    def __init__(self, conn: NatsConnection) -> None:
        self._conn = conn

    async def verify(self, recipient: str, namespace: str) -> Verdict:
        question = RcptCheck(recipient=recipient, namespace=namespace)
        try:
            reply = await self._conn.nc.request(
                subjects.RCPTCHECK, question.encode(), timeout=ASK_WITHIN
            )
            answer = RcptVerdict.decode(reply.data)
        except (NotConnected, nats.errors.Error, TimeoutError, ValidationError) as err:
            log.warning("smtpd.rcptcheck_unavailable", extra={"reason": type(err).__name__})
            return "tempfail"
        return answer.verdict
