"""Queue ids and qp numbers (QUEUE-05, QUEUE-06).

A queue id is ``<unix-ms>.<16 hex>``: sortable, unique across the cluster, safe as an object-key
segment, a KV-key token and a Nats-Msg-Id stem. The qp is the decimal number qmail printed in
``250 ok <t> qp <qp>``; here a 53-bit random number.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import NewType

QueueId = NewType("QueueId", str)

QUEUE_ID_RE = re.compile(r"^[0-9]{13}\.[0-9a-f]{16}$")


def new_queue_id(now: float | None = None) -> QueueId:
    ms = int((time.time() if now is None else now) * 1000)
    return QueueId(f"{ms:013d}.{secrets.token_hex(8)}")


def parse_queue_id(text: str) -> QueueId:
    """Accept ``text`` as a queue id only if it matches the grammar (ARCH-22)."""
    if not QUEUE_ID_RE.fullmatch(text):
        raise ValueError(f"not a queue id: {text[:40]!r}")
    return QueueId(text)


def queue_id_birth(qid: QueueId) -> float:
    """The enqueue time encoded in a queue id, in Unix seconds."""
    return int(qid.split(".", 1)[0]) / 1000.0


def new_qp() -> int:
    """A qp: 53 random bits, never 0 (QUEUE-05)."""
    return secrets.randbits(53) or 1
