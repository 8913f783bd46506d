"""qmail-clean's orphan rule as pure decisions (CLEAN-03, CLEAN-05, CLEAN-06).

A body ``mess/<id>`` is an orphan when its enqueue never committed: no todo event is pending
for it and no record ``msg.<id>`` exists. It is removed only when it is older than
:data:`ORPHAN_AGE`, which stays above the 24-hour enqueue limit (QUEUE-08), so an enqueue
still running is never robbed of its body. Nothing here touches NATS or storage; the sweep
that reads them is :mod:`services.send.cleaner`.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from qmesh.contract.ids import QueueId, parse_queue_id, queue_id_birth
from qmesh.store.base import BlobInfo
from qmesh.store.keys import MESS_PREFIX

ORPHAN_AGE = 36 * 3600.0  # CLEAN-03: never earlier
CLEAN_INTERVAL = 21 * 3600.0  # CLEAN-05: at least once a day (qmail: about every 21 hours)
ENQUEUE_LIMIT = 24 * 3600.0  # QUEUE-08, which ORPHAN_AGE must exceed


def body_id(key: str) -> QueueId | None:
    """The queue id of a body key ``mess/<id>``; ``None`` for any other key (left alone)."""
    if not key.startswith(MESS_PREFIX):
        return None
    try:
        return parse_queue_id(key.removeprefix(MESS_PREFIX))
    except ValueError:
        return None


def old_bodies(bodies: Iterable[BlobInfo], now: float, age: float = ORPHAN_AGE) -> list[QueueId]:
    """Ids of the bodies created more than ``age`` seconds before ``now`` (CLEAN-03).

    The age counts from the later of the object's time and the time in its id, so a body
    rewritten or stamped oddly is given the benefit of the doubt.
    """
    found: list[QueueId] = []
    for info in bodies:
        qid = body_id(info.key)
        if qid is None:
            continue
        if now - max(info.modified, queue_id_birth(qid)) > age:
            found.append(qid)
    return found


def orphans(candidates: Iterable[QueueId], live: Container[str]) -> list[QueueId]:
    """The candidates not referenced by ``live`` (records or pending todos, CLEAN-06)."""
    return [qid for qid in candidates if qid not in live]
