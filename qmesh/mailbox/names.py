"""KV keys and the announcement subject of an account (#13, ARCHITECTURE 4).

Addresses never appear in subjects or keys, so an account is named by a digest of its
directory names: ``qmesh.mailbox.<account-key>`` is the subject ``local``, imapd, pop3d and
webmail publish on when a folder changes, and ``<account-key>.…`` are its keys in
``qmesh_mailbox``.
"""

from __future__ import annotations

import hashlib

from qmesh.contract import subjects


def account_key(domain: str, account: str) -> str:
    """24 hex digits of SHA-256 over ``<domain>/<account>`` (validated directory names)."""
    return hashlib.sha256(f"{domain}/{account}".encode()).hexdigest()[:24]


def announce_subject(domain: str, account: str) -> str:
    return subjects.mailbox(account_key(domain, account))


def announce_filter() -> str:
    """Every account's announcements: what an imapd replica subscribes to."""
    return subjects.MAILBOX_ALL


def folders_key(domain: str, account: str) -> str:
    """The account record: which folders exist and which are subscribed."""
    return f"{account_key(domain, account)}.folders"


def index_key(domain: str, account: str, segment: str) -> str:
    """One folder's index; the folder's key segment is hex-encoded (KV keys are a small set)."""
    return f"{account_key(domain, account)}.f.{segment.encode().hex()}"
