"""Object keys, built only from queue ids and validated directory names (ARCHITECTURE 4, 5).

Addresses never appear in keys. Every key segment is non-empty, not ``.`` or ``..``, and holds
no ``/``, ``\\`` or control character; adapters call :func:`check_key` on every key they get.
"""

from __future__ import annotations

import re

from qmesh.contract.ids import QueueId, parse_queue_id

MESS_PREFIX = "mess/"
MAX_KEY_BYTES = 900
_BAD_CHARACTER = re.compile(r"[\x00-\x20\x7f\\]")  # control characters, space, backslash


class BadKey(ValueError):
    """A key that no adapter will accept."""


def check_key(key: str, *, prefix: bool = False) -> str:
    """Return ``key`` if it is safe; raise :class:`BadKey` otherwise.

    With ``prefix`` a trailing ``/`` (a listing prefix) and an empty key are allowed.
    """
    if prefix and key == "":
        return key
    body = key[:-1] if prefix and key.endswith("/") else key
    if len(key.encode()) > MAX_KEY_BYTES:
        raise BadKey("key too long")
    for segment in body.split("/"):
        if segment in ("", ".", ".."):
            raise BadKey(f"bad key segment in {key!r}")
    if _BAD_CHARACTER.search(body):
        raise BadKey(f"bad character in key {key!r}")
    return key


def body_key(qid: QueueId) -> str:
    """``mess/<id>`` in the queue bucket (ARCHITECTURE section 5)."""
    return MESS_PREFIX + parse_queue_id(qid)


def mailbox_prefix(domain: str, account: str, folder: str = "INBOX") -> str:
    """``<domain>/<account>/<folder>/`` in the mail bucket (LOCAL-60)."""
    return check_key(f"{domain}/{account}/{folder}/", prefix=True)


def mailbox_key(domain: str, account: str, folder: str, sub: str, name: str) -> str:
    """``<domain>/<account>/<folder>/<new|cur|tmp>/<name>`` (LOCAL-60)."""
    if sub not in ("new", "cur", "tmp"):
        raise BadKey(f"bad maildir subdirectory {sub!r}")
    return check_key(f"{domain}/{account}/{folder}/{sub}/{name}")
