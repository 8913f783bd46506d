"""local's hook: a message for a list address goes to the lists service (issue #15).

ezmlm ran as a delivery program under qmail-local (`|ezmlm-send`, `|ezmlm-manage`); here local
stores the message as it would pipe it to a program (Delivered-To line first, LOCAL-23) under
``lists/in/<id>.<index>`` and publishes one ``qmesh.job.lists`` event. The delivery has
succeeded once JetStream holds the event, as qmail-local's has once ezmlm-send exits 0; from
then on the list answers for the message, and the queue's body may be cleaned. A repeated
hand-over (same id and index) writes the same object and the same ``Nats-Msg-Id``.
"""

from __future__ import annotations

import time

from qmesh.bus.base import Publisher, PublishFailed
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.contract.events import LocalJob
from qmesh.lists.events import ListJob
from qmesh.lists.names import in_key
from qmesh.lists.records import LIST_RULE
from qmesh.store.base import BlobStore, StoreUnavailable

DEFAULT_SUFFIX = "-default"
CANNOT_HAND_OVER = "Unable to hand the message to the list. (#4.3.0)"


def is_list_rule(text: str) -> bool:
    return text.strip() == LIST_RULE


class Handoff:
    def __init__(self, queue: BlobStore, bus: Publisher) -> None:
        self._queue = queue
        self._bus = bus

    async def __call__(
        self, job: LocalJob, rule: str | None, default: str | None, content: bytes
    ) -> None:
        """Store and announce; ``rule`` is ``LIST`` or ``LIST-default`` (``default`` is the
        part of the address that ``default`` stood for). Raises ``Temporary``."""
        name = (rule or "").removesuffix(DEFAULT_SUFFIX)
        ext = default if rule is not None and rule.endswith(DEFAULT_SUFFIX) else ""
        key = in_key(job.id, job.rcpt_index)
        try:
            await self._queue.put(key, content)
            event = ListJob(
                id=job.id,
                rcpt_index=job.rcpt_index,
                sender=job.sender,
                recipient=job.recipient,
                domain=job.namespace,
                name=name,
                ext=ext or "",
                body=key,
                handed_at=time.time(),
            )
            await self._bus.publish(subjects.JOB_LISTS, event.encode(), msg_id=event.msg_id())
        except (StoreUnavailable, PublishFailed, OSError, ValueError) as err:
            raise Temporary(CANNOT_HAND_OVER) from err
