"""The lists' object names (issue #15); their subject, stream, consumer and bucket are in
``qmesh.contract.subjects``. Object keys live in the queue bucket under ``lists/`` and use the
queue id, a post number and hashes of addresses, never an address (ARCH section 4).
"""

from __future__ import annotations

import hashlib

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
