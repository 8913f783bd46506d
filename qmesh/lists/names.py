"""The lists' NATS and object names (issue #15), kept beside the contract's own names.

Proposed for ``qmesh.contract.subjects`` and ARCHITECTURE section 4: stream ``QMESH_LISTS``
(subject ``qmesh.job.lists``, work queue), durable consumer ``lists``, KV bucket
``qmesh_lists``. Object keys live in the queue bucket under ``lists/`` and use the queue id,
a post number and hashes of addresses, never an address (ARCH section 4).
"""

from __future__ import annotations

import hashlib

JOB_LISTS = "qmesh.job.lists"
STREAM_LISTS = "QMESH_LISTS"
CONSUMER_LISTS = "lists"
KV_LISTS = "qmesh_lists"
LISTS_PENDING = 16  # list jobs in flight cluster-wide (a post's fan-out is one enqueue)

IN_PREFIX = "lists/in/"
ARCHIVE_PREFIX = "lists/archive/"
HELD_PREFIX = "lists/held/"


def digest(text: str, size: int = 20) -> str:
    """A stable hex name for an address in a key or subject (never the address itself)."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:size]


def list_hash(address: str) -> str:
    return digest(address.lower())


def in_key(queue_id: str, rcpt_index: int) -> str:
    """The copy of a message handed over by local (its queue body is deleted once done)."""
    return f"{IN_PREFIX}{queue_id}.{rcpt_index}"


def archive_key(address: str, number: int) -> str:
    return f"{ARCHIVE_PREFIX}{list_hash(address)}/{number}"


def held_key(address: str, held_id: str) -> str:
    return f"{HELD_PREFIX}{list_hash(address)}/{held_id}"
