"""Subjects, streams, consumers and KV buckets: the only place these names are written
(ARCHITECTURE section 4). A subject that takes a parameter is a function."""

from __future__ import annotations

from typing import Literal

Channel = Literal["local", "remote"]
CHANNELS: tuple[Channel, ...] = ("local", "remote")

TODO = "qmesh.todo"
JOB_LOCAL = "qmesh.job.local"
JOB_REMOTE = "qmesh.job.remote"
RESULT_LOCAL = "qmesh.result.local"
RESULT_REMOTE = "qmesh.result.remote"
ADMIN_SEND_FLUSH = "qmesh.admin.send.flush"
ADMIN_SEND_RELOAD = "qmesh.admin.send.reload"
SHUNT_TODO = "qmesh.shunt.todo"  # events that failed with a bug, kept for a human (#11)
SHUNT_LOCAL = "qmesh.shunt.local"
SHUNT_REMOTE = "qmesh.shunt.remote"
SHUNT_RESULT = "qmesh.shunt.result"
RCPTCHECK = "qmesh.rcptcheck"  # request/reply on core NATS: smtpd asks, local answers (LOCAL-34)
JOB_LISTS = "qmesh.job.lists"  # local hands a message for a list address over (issue #15)
SHUNT_LISTS = "qmesh.shunt.lists"  # list jobs that failed with a bug (#11, issue #15)

STREAM_TODO = "QMESH_TODO"
STREAM_LOCAL = "QMESH_LOCAL"
STREAM_REMOTE = "QMESH_REMOTE"
STREAM_RESULT = "QMESH_RESULT"
STREAM_SHUNT = "QMESH_SHUNT"
STREAM_LISTS = "QMESH_LISTS"

CONSUMER_SEND_TODO = "send-todo"
CONSUMER_SEND_RESULT = "send-result"
CONSUMER_LOCAL = "local"
CONSUMER_REMOTE = "remote"
CONSUMER_LISTS = "lists"

KV_QUEUE = "qmesh_queue"
KV_DIRECTORY = "qmesh_directory"
KV_LEASES = "qmesh_leases"
KV_TCPTO = "qmesh_tcpto"  # remote's shared connection-timeout memory (REMOTE-22)
KV_DELIVERIES = "qmesh_deliveries"  # what local and remote delivered (hardening #10)
KV_MTASTS = "qmesh_mtasts"  # remote's cache of MTA-STS policies (RFC 8461)
KV_LISTS = "qmesh_lists"  # subscribers and state of the mailing lists (issue #15)
KV_LIMITS = "qmesh_limits"  # cluster-wide limits, anvil; failed logins of every listener (#12)
KV_MAILBOX = "qmesh_mailbox"  # folder indexes (UIDs, flags, MODSEQ) and account records (#13)
# core NATS, no stream: "a folder of this account changed" for IDLE on every imapd (#13)
MAILBOX_ALL = "qmesh.mailbox.*"
KV_WEBSESSIONS = "qmesh_websessions"  # admin's login sessions (#14)
KV_MAILSESSIONS = "qmesh_mailsessions"  # webmail's login sessions, apart from admin's (#14)


def job(channel: Channel) -> str:
    return JOB_LOCAL if channel == "local" else JOB_REMOTE


def result(channel: Channel) -> str:
    return RESULT_LOCAL if channel == "local" else RESULT_REMOTE


def job_stream(channel: Channel) -> str:
    return STREAM_LOCAL if channel == "local" else STREAM_REMOTE


def job_consumer(channel: Channel) -> str:
    return CONSUMER_LOCAL if channel == "local" else CONSUMER_REMOTE


def shunt_filter() -> str:
    """Every subject of stream ``QMESH_SHUNT``: what ``qmesh queue shunted`` reads."""
    return "qmesh.shunt.>"


def mailbox(account_key: str) -> str:
    """``qmesh.mailbox.<account-key>``: the account's announcements (#13)."""
    return "qmesh.mailbox." + account_key
