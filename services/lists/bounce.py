"""Bounces: whom a bounce is about, and ezmlm's probe-then-remove rule (issue #15). Pure.

A bounce to ``LIST-return-N-box=host@`` names its subscriber (VERP); one to
``LIST-return-N-@`` (qmesh's own bounces of a batched post, and any foreign DSN) is read as
ezmlm-return reads it: qmail's ``<box@host>:`` paragraphs and RFC 3464 ``Final-Recipient``.

The rule (ezmlm-return and ezmlm-warn): each bounce is recorded for the subscriber with the
post's number; once the bounces have gone on for ``period`` seconds a warning is sent to the
address, naming the posts that bounced (ezmlm-warn's first message); if the warning bounces
too, a probe is sent, and if the probe bounces, the address is removed. Warning and probe are
VERP'd (``LIST-return-warn-box=host@``, ``LIST-return-probe-box=host@``), so their bounces are
unambiguous. Should the warning's bounce be lost, a bounce ``period`` after the warning sends
the probe. A subscriber whose last bounce is older than twice ``period`` starts afresh, as
ezmlm forgets old bounce records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from qmesh.lists.address import address_problem

MAX_SCAN = 64 * 1024
_QMAIL = re.compile(rb"^<([^<>\s]{1,254})>:\s*$", re.MULTILINE)
_DSN = re.compile(
    rb"^Final-Recipient:\s*rfc822;\s*<?([^<>\s]{1,254})>?\s*$", re.MULTILINE | re.IGNORECASE
)

Action = Literal["count", "warn", "probe", "nothing"]


def bounced(message: bytes) -> list[str]:
    """Addresses a bounce reports as failed (first 64 KiB), valid ones only, no repeats."""
    text = message[:MAX_SCAN]
    found: list[str] = []
    for m in list(_QMAIL.finditer(text)) + list(_DSN.finditer(text)):
        address = m.group(1).decode("utf-8", "replace")
        if address_problem(address) is None and address.lower() not in (a.lower() for a in found):
            found.append(address)
    return found


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    record: dict[str, Any]


def on_bounce(record: dict[str, Any], now: float, period: int, number: int | None) -> Decision:
    """A post (number ``number``) bounced for this subscriber: the new record, probe or not."""
    if record and now - float(record.get("last", now)) > max(period, 1) * 2:
        record = {}  # an old series: forgotten (ezmlm-warn drops stale bounce records)
    first = float(record.get("first", now))
    new: dict[str, Any] = {
        "first": first,
        "last": now,
        "count": int(record.get("count", 0)) + 1,
        "posts": (list(record.get("posts", [])) + ([number] if number is not None else []))[-20:],
        "warned": record.get("warned"),
        "probed": record.get("probed"),
    }
    if new["warned"] is None and now - first >= period:
        new["warned"] = now
        return Decision("warn", new)
    warned = new["warned"]
    if new["probed"] is None and warned is not None and now - float(warned) >= max(period, 1):
        new["probed"] = now
        return Decision("probe", new)
    return Decision("count", new)


def on_warning_bounce(record: dict[str, Any], now: float) -> Decision:
    """The warning bounced: probe, once."""
    if not record or record.get("probed") is not None:
        return Decision("nothing", record)
    return Decision("probe", {**record, "probed": now, "last": now})
