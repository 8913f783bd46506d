"""What remote has delivered already: one record per (queue id, recipient index), so a job
published twice is delivered once (hardening #10, ARCH-11 for remote).

A job can reach remote twice: a ``send`` that dies between publishing a pass and recording it
leaves the next owner to publish the same jobs again, and JetStream forgets the ``Nats-Msg-Id``
of an acknowledged work-queue message when the server restarts. Before a transaction remote
*claims* the recipient (a KV create, so only one claim wins); after it, the final outcome
(``delivered`` or ``failed``) replaces the claim and a ``deferred`` one removes it, so the next
pass tries again. A job whose recipient has a final record is answered from the record,
without a transaction. A fresh claim of another worker means that worker is delivering right
now: the job is deferred briefly (:class:`Busy`) and then answered from its record. A claim
older than :data:`CLAIM_STALE` belongs to a worker that died mid-transaction; as qmail-remote
would, the recipient is delivered again (the one window in which the peer may see the message
twice, ARCH-03).

Records live in KV :data:`~qmesh.contract.subjects.KV_DELIVERIES`, whose TTL outlasts any
message's life in the queue (``queuelifetime``); keys use the queue id and index only.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.contract.errors import Temporary
from qmesh.contract.events import RemoteJob
from qmesh.contract.outcome import Outcome

log = logging.getLogger(__name__)

CLAIM_STALE = 90.0  # seconds: three ack waits without an answer; the claimant is gone
KV_ERRORS = (NatsError, JsError, OSError, TimeoutError, ConnectionError)


class Busy(Temporary):
    """Another worker is delivering this recipient right now."""


@dataclass(frozen=True, slots=True)
class Recorded:
    outcome: Outcome
    report: str
    remote_host: str | None


def key_for(job: RemoteJob) -> str:
    return f"{job.id}.{job.rcpt_index}"


def claim_value(token: str, now: float) -> bytes:
    return json.dumps({"claim": token, "at": now}).encode()


def final_value(outcome: Outcome, report: str, remote_host: str | None) -> bytes:
    return json.dumps({"outcome": outcome, "report": report, "remote_host": remote_host}).encode()


def read(value: bytes) -> Recorded | float | None:
    """A final record, the time of a claim, or None for a value that cannot be read."""
    try:
        data = json.loads(value)
        if data.get("outcome") in ("delivered", "failed"):
            return Recorded(data["outcome"], str(data.get("report", "")), data.get("remote_host"))
        return float(data["at"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class Ledger:
    def __init__(self, kv: Callable[[], KeyValue], clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock
        self._token = secrets.token_hex(8)

    async def claim(self, job: RemoteJob) -> Recorded | None:
        """The recorded final outcome, or None once this worker holds the claim."""
        key = key_for(job)
        try:
            kv = self._kv()
            try:
                await kv.create(key, claim_value(self._token, self._clock()))
                return None
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                raise Busy("delivery record changed; trying again") from None
            found = read(entry.value or b"")
            if isinstance(found, Recorded):
                return found
            if found is not None and self._clock() - found < CLAIM_STALE:
                raise Busy("another worker is delivering this recipient")
            assert entry.revision is not None
            await kv.update(key, claim_value(self._token, self._clock()), last=entry.revision)
        except KeyWrongLastSequenceError:
            raise Busy("delivery record changed; trying again") from None
        except KV_ERRORS as err:
            raise Temporary(f"cannot read the delivery record: {err!r}") from err
        log.warning(
            "remote.claim_taken_over", extra={"msg_id": job.id, "rcpt_index": job.rcpt_index}
        )
        return None

    async def settle(
        self, job: RemoteJob, outcome: Outcome, report: str, remote_host: str | None
    ) -> None:
        """Replace the claim by the final outcome, or drop it after a deferral."""
        kv = self._kv()
        if outcome == "deferred":
            await kv.delete(key_for(job))
        else:
            await kv.put(key_for(job), final_value(outcome, report, remote_host))
