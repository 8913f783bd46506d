"""What ``qmesh queue stat|list|show|flush|shunted`` print: pure formatting of send's queue records.

A record ``msg.<id>`` of KV ``qmesh_queue`` is written by ``send`` (its model is
``services/send/state.py``, which ``qmesh`` may not import). :class:`QueueRecord` reads the
same JSON, ignoring fields it does not know, so an added field never breaks the commands; a
record of another ``kind`` is reported as unreadable. Times are printed in UTC; addresses and
reports have control characters escaped, so a record cannot drive the terminal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qmesh.bus.shunt import Shunted
from qmesh.contract import wire
from qmesh.contract.events import Flushed, Origin
from qmesh.contract.subjects import CHANNELS, Channel

RECORD_PREFIX = "msg."


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class RecipientView(_View):
    index: int
    channel: Channel
    address: str
    original: str
    namespace: str | None = None
    done: bool = False
    attempts: int = 0
    last_report: str = ""


class FailureView(_View):
    index: int
    address: str
    report: str
    remote_host: str | None = None
    at: float
    expired: bool = False


class PassView(_View):
    attempt: int = 0
    started: float = 0.0
    inflight: tuple[int, ...] = ()
    final: bool = False
    next_at: float | None = None


class QueueRecord(_View):
    kind: Literal["qmesh.queue.message.v1"]
    id: str
    qp: int
    sender: str
    birth: float
    origin: Origin
    size: int
    smtputf8: bool = False
    recipients: tuple[RecipientView, ...]
    passes: dict[Channel, PassView] = Field(default_factory=dict)
    bounces: tuple[FailureView, ...] = ()
    bounced: int = 0

    @classmethod
    def decode(cls, data: bytes) -> QueueRecord:
        return wire.loads(cls, data)

    def pass_of(self, channel: Channel) -> PassView:
        return self.passes.get(channel, PassView())


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record the commands cannot decode (another version, or damaged)."""

    id: str
    reason: str


Listed = QueueRecord | Unreadable


def read_record(qid: str, data: bytes | None) -> Listed:
    try:
        return QueueRecord.decode(data or b"")
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        return Unreadable(qid, f"{where}: {first['msg']}")


# --- small pieces ---------------------------------------------------------------------------


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with control characters (and bytes that were not UTF-8) as ``\\xNN``."""
    out = []
    for c in text:
        o = ord(c)
        if c == "\n" and newlines:
            out.append(c)
        elif o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:  # surrogateescape of a non-UTF-8 byte
            out.append(f"\\x{o - 0xDC00:02x}")
        else:
            out.append(c)
    return "".join(out)


def utc(when: float) -> str:
    """``2024-11-25 04:46:40 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def duration(seconds: float) -> str:
    """``45s``, ``6m40s``, ``1h02m``, ``3d04h``: two units at most."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def relative(when: float, now: float) -> str:
    return f"in {duration(when - now)}" if when > now else "due"


def angle(address: str) -> str:
    return f"<{printable(address)}>"


def channel_next_at(record: QueueRecord, channel: Channel) -> float | None:
    """When the channel's next pass may start; ``None``: never tried yet, so at once."""
    return record.pass_of(channel).next_at


def recipient_state(record: QueueRecord, r: RecipientView) -> str:
    if r.done:
        return "done"
    if r.index in record.pass_of(r.channel).inflight:
        return "in flight"
    return "not done"


# --- qmesh queue stat (qmail-qstat) ---------------------------------------------------------


def format_stat(records: int, todo: int) -> str:
    """qmail-qstat's two lines. As there, the first count includes the second: a message is
    in the queue from its todo event on (``records`` are the preprocessed ones)."""
    return (
        f"messages in queue: {records + todo}\nmessages in queue but not yet preprocessed: {todo}\n"
    )


# --- qmesh queue list (qmail-qread) ---------------------------------------------------------


def sort_key(item: Listed) -> str:
    return item.id  # <unix-ms, 13 digits>.<hex>: sorts by enqueue time


def format_list(items: Iterable[Listed], now: float) -> str:
    """One block per message, oldest first: a header line, then one line per recipient."""
    lines: list[str] = []
    for item in sorted(items, key=sort_key):
        if isinstance(item, Unreadable):
            lines.append(f"{printable(item.id)}  unreadable record ({printable(item.reason)})")
            continue
        lines.append(
            f"{printable(item.id)}  {utc(item.birth)}  age {duration(now - item.birth)}  "
            f"{item.size} bytes  from {angle(item.sender)}"
        )
        for r in item.recipients:
            state = recipient_state(item, r)
            at = channel_next_at(item, r.channel)
            if r.done:
                when = ""
            elif at is not None and at > now:
                when = f"next {utc(at)}"
            else:
                when = "next after this pass" if state == "in flight" else "next now"
            lines.append(f"  {r.channel:<6}  {state:<9}  {when:<28}  {printable(r.address)}")
    return "".join(line.rstrip() + "\n" for line in lines)


# --- qmesh queue show ID --------------------------------------------------------------------


def _origin(o: Origin) -> str:
    parts: list[str] = [o.kind]
    if o.account:
        parts.append(f"account {printable(o.account)}")
    if o.auth_user:
        parts.append(f"auth user {printable(o.auth_user)}")
    if o.client_ip:
        parts.append(f"client {printable(o.client_ip)}")
    return ", ".join(parts)


def _report(text: str, indent: str) -> list[str]:
    return [indent + line for line in printable(text, newlines=True).rstrip("\n").split("\n")]


def _pass_line(record: QueueRecord, channel: Channel, now: float) -> str | None:
    if not any(r.channel == channel for r in record.recipients):
        return None
    p = record.pass_of(channel)
    pending = sum(1 for r in record.recipients if r.channel == channel and not r.done)
    if p.attempt == 0:
        tried = "not tried yet"
    else:
        tried = f"pass {p.attempt} started {utc(p.started)}" + (" (final)" if p.final else "")
    flight = ",".join(str(i) for i in p.inflight) if p.inflight else "none"
    if pending == 0:
        nxt = "nothing left to do"
    elif p.next_at is None:
        nxt = "next attempt now"
    else:
        nxt = f"next attempt {utc(p.next_at)} ({relative(p.next_at, now)})"
    return f"  {channel:<6}  {tried}; {pending} not done; in flight: {flight}; {nxt}"


def format_show(record: QueueRecord, now: float) -> str:
    """The whole record, including the failures still waiting for their bounce."""
    lines = [
        f"message {printable(record.id)}",
        f"  qp        {record.qp}",
        f"  born      {utc(record.birth)} (age {duration(now - record.birth)})",
        f"  sender    {angle(record.sender)}",
        f"  origin    {_origin(record.origin)}",
        f"  size      {record.size} bytes",
        f"  smtputf8  {'yes' if record.smtputf8 else 'no'}",
        f"  bounces   {record.bounced} sent",
        "channels:",
    ]
    lines += [line for ch in CHANNELS if (line := _pass_line(record, ch, now)) is not None]
    lines.append("recipients:")
    for r in record.recipients:
        lines.append(
            f"  {r.index:<3} {r.channel:<6}  {recipient_state(record, r):<9}  "
            f"{printable(r.address)}"
        )
        if r.original != r.address:
            lines.append(f"        original   {printable(r.original)}")
        if r.namespace is not None:
            lines.append(f"        namespace  {printable(r.namespace)}")
        lines.append(f"        attempts   {r.attempts}")
        if r.last_report:
            lines.append("        last report:")
            lines += _report(r.last_report, "          ")
    if record.bounces:
        lines.append("failures not yet bounced:")
        for f in record.bounces:
            extra = f", host {printable(f.remote_host)}" if f.remote_host else ""
            extra += ", queue lifetime exceeded" if f.expired else ""
            lines.append(f"  {f.index:<3} {angle(f.address)} at {utc(f.at)}{extra}")
            lines += _report(f.report, "        ")
    return "".join(line.rstrip() + "\n" for line in lines)


# --- qmesh queue flush (qmail-send's ALRM) --------------------------------------------------


def format_flushed(answer: Flushed) -> str:
    """send's answer: how many messages it made due (or found due), and what failed."""
    text = f"flushed: {answer.due} of {answer.queued} messages due for delivery now\n"
    if answer.failed:
        text += f"not flushed: {answer.failed} ({printable(answer.error or 'no reason given')})\n"
    return text


def format_shunted(entries: Iterable[Shunted], now: float) -> str:
    """``qmesh queue shunted``: one line per entry (hardening #11), oldest first."""
    lines = []
    for e in entries:
        lines.append(
            f"{e.seq}  {printable(e.origin)}  {utc(e.at)} ({duration(max(0.0, now - e.at))} ago)"
            f"  {printable(e.queue_id) or '-'}  after {e.deliveries} deliveries:"
            f"  {printable(e.error)}\n"
        )
    return "".join(lines) or "nothing shunted\n"
