"""The list's own messages: confirmation requests, welcomes, help, refusals (issue #15). Pure.

Each is a complete RFC 5322 message with ``Auto-Submitted: auto-replied`` (RFC 3834), so
well-behaved responders do not answer it; every address written into a header goes through
:func:`~qmesh.contract.envelope.printable`.
"""

from __future__ import annotations

import email.utils

from qmesh.contract.envelope import printable
from qmesh.lists.records import ListRecord


def message(
    record: ListRecord,
    to: str,
    subject: str,
    text: str,
    *,
    reply_to: str | None = None,
    when: float,
    one_click: str | None = None,
) -> bytes:
    lines = [
        f"From: {record.at('help')}",
        f"To: {printable(to)}",
        f"Subject: {printable(subject)}",
        f"Date: {email.utils.formatdate(when)}",
        f"Message-ID: {email.utils.make_msgid('list', record.domain)}",
        "Auto-Submitted: auto-replied",
        f"List-Id: <{record.name}.{record.domain}>",
        f"List-Help: <mailto:{record.at('help')}>",
        "Precedence: bulk",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    if reply_to:
        lines.append(f"Reply-To: {printable(reply_to)}")
    if one_click:  # RFC 8058: this message has one reader, whom the token names
        lines.append(f"List-Unsubscribe: <{one_click}>, <mailto:{record.at('unsubscribe')}>")
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    return ("\n".join(lines) + "\n\n" + text.rstrip("\n") + "\n").encode("utf-8", "surrogateescape")


def help_text(record: ListRecord) -> str:
    at = record.at
    return f"""Hi! This is the list manager for {record.address}.

To subscribe, send a message to {at("subscribe")}.
To unsubscribe, send a message to {at("unsubscribe")}.
For the digest: {at("digest-subscribe")} and {at("digest-unsubscribe")}.
To reach the list's owner: {at("owner")}.
To get message number N from the archive: {record.name}-get.N@{record.domain}.

Every subscription and unsubscription is confirmed by a reply to a message sent to the
address concerned, so nobody can subscribe or unsubscribe someone else.
"""


def confirm_request(
    record: ListRecord, target: str, confirm: str, *, leaving: bool, digest: bool
) -> tuple[str, str]:
    what = ("unsubscribe" if leaving else "subscribe") + (" (digest)" if digest else "")
    subject = f"confirm {what} to {record.address}"
    text = f"""Hi! This is the list manager for {record.address}.

Someone, probably you, asked to {what} the address
    {printable(target)}
{"from" if leaving else "to"} the list {record.address}.

To confirm, reply to this message, or send an empty message to
    {printable(confirm)}

This confirmation address works for about eleven days. If you did not ask for this,
ignore this message: nothing will change.
"""
    return subject, text


def done(record: ListRecord, target: str, *, leaving: bool, changed: bool) -> tuple[str, str]:
    if leaving:
        subject = f"GOODBYE from {record.address}"
        state = "no longer" if changed else "not"
        text = f"{printable(target)} is {state} subscribed to {record.address}.\n"
    else:
        subject = f"WELCOME to {record.address}"
        state = "now" if changed else "already"
        text = f"{printable(target)} is {state} subscribed to {record.address}.\n\n"
        text += help_text(record)
    return subject, text


def refusal(record: ListRecord, why: str) -> tuple[str, str]:
    subject = f"refused by {record.address}"
    text = f"""Hi! This is the list manager for {record.address}.

I did not act on your message: {why}.

{help_text(record)}"""
    return subject, text


def moderation_request(
    record: ListRecord, poster: str, accept: str, reject: str
) -> tuple[str, str]:
    subject = f"MODERATE for {record.address}"
    text = f"""A message from {printable(poster)} to {record.address} waits for a moderator.

To post it, send an empty message to
    {accept}
To refuse it, send a message to
    {reject}
"""
    return subject, text


def probe(record: ListRecord, target: str) -> tuple[str, str]:
    subject = f"bounce probe for {record.address}"
    text = f"""Hi! This is the list manager for {record.address}.

Messages to you from the list have been bouncing. This message checks whether the address
    {printable(target)}
still works. If it bounces too, the address is removed from the list.
"""
    return subject, text


def warning(record: ListRecord, target: str, posts: list[int]) -> tuple[str, str]:
    """ezmlm-warn's first message: which posts bounced, and how to get them back."""
    subject = f"warning from {record.address}"
    numbers = ", ".join(str(n) for n in posts[-20:]) or "(not known)"
    fetch = (
        f"You can have any of them sent again: send a message to {record.name}-get.N@"
        f"{record.domain}, N being its number.\n"
        if record.archive
        else ""
    )
    text = f"""Hi! This is the list manager for {record.address}.

Messages to you from the list have been bouncing. The address
    {printable(target)}
missed these messages: {numbers}
{fetch}
If this message bounces too, a probe follows; if the probe bounces, the address is removed
from the list.
"""
    return subject, text
