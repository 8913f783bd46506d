"""``qmesh queue stat|list|show|flush``: looking at the queue, and qmail-send's ALRM.

    qmesh queue stat          qmail-qstat: messages in the queue, and those not yet preprocessed
    qmesh queue list          qmail-qread: every message with its recipients, oldest first
    qmesh queue show ID       one message's whole record, with failures waiting for a bounce
    qmesh queue flush [--timeout SECONDS]
                              every waiting delivery due now (SEND-25), done by a running send
    qmesh queue shunted       events given up on after failing with a bug (hardening #11)
    qmesh queue requeue ID    put a shunted event (its sequence, or every one of a queue id)
                              back on the subject it came from, and remove it from the shunt

The first three only read: the records ``msg.<id>`` of KV ``qmesh_queue`` and the state of
stream ``QMESH_TODO``. ``flush`` is a request on ``qmesh.admin.send.flush``, answered by one
``send`` (a queue group). ``shunted`` reads stream ``QMESH_SHUNT``; ``requeue`` publishes
there and deletes the entry (Mailman's shunt queue). NATS is found as for every command
(:mod:`qmesh.cli.connect`).
Exit status: 0 done, 1 refused (no such message, not a queue id), 111 temporary (NATS
unreachable, no send answered, records that could not be flushed): try again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TextIO

import nats.errors
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError, NotFoundError
from nats.js.errors import Error as JsError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from qmesh.bus.shunt import SHUNT_OF_ORIGIN, Shunted, requeue_headers
from qmesh.cli.admin import EXIT_OK, EXIT_REFUSED, EXIT_TEMPORARY
from qmesh.cli.connect import nats_session
from qmesh.cli.queue import (
    RECORD_PREFIX,
    Listed,
    QueueRecord,
    format_flushed,
    format_list,
    format_show,
    format_shunted,
    format_stat,
    printable,
    read_record,
)
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.contract.events import Flushed, FlushRequest
from qmesh.contract.ids import parse_queue_id

FLUSH_TIMEOUT = 10.0  # seconds a send may take to flush and answer
READ_TIMEOUT = 10.0  # seconds between two records of a listing


class Refused(Exception):
    """The command cannot be done as asked (exit 1)."""


class Unavailable(Temporary):
    """NATS or send did not do its part (exit 111)."""


_NATS_ERRORS = (NatsError, JsError, OSError, TimeoutError)


async def _queue_kv(js: JetStreamContext) -> KeyValue | None:
    """The bucket, or ``None`` when no send has ever created it (an empty queue)."""
    try:
        return await js.key_value(subjects.KV_QUEUE)
    except (BucketNotFoundError, NotFoundError):
        return None


async def count_records(js: JetStreamContext) -> int:
    kv = await _queue_kv(js)
    if kv is None:
        return 0
    try:
        keys = await kv.keys()
    except NoKeysError:
        return 0
    return sum(1 for k in keys if k.startswith(RECORD_PREFIX))


async def todo_pending(js: JetStreamContext) -> int:
    """Todo events not yet acknowledged by send: preprocessing has not finished (SEND-01)."""
    try:
        info = await js.stream_info(subjects.STREAM_TODO)
    except NotFoundError:
        return 0
    return int(info.state.messages)


async def read_records(js: JetStreamContext) -> list[Listed]:
    """The latest value of every record, read with one KV watch."""
    kv = await _queue_kv(js)
    if kv is None:
        return []
    watcher = await kv.watch(f"{RECORD_PREFIX}>", ignore_deletes=True)
    found: list[Listed] = []
    try:
        while True:
            entry = await watcher.updates(timeout=READ_TIMEOUT)
            if entry is None:  # the end of the values present when the watch began
                break
            found.append(read_record(entry.key.removeprefix(RECORD_PREFIX), entry.value))
    finally:
        await watcher.stop()
    return found


async def read_one(js: JetStreamContext, qid: str) -> Listed | None:
    kv = await _queue_kv(js)
    if kv is None:
        return None
    try:
        entry = await kv.get(f"{RECORD_PREFIX}{qid}")
    except KeyNotFoundError:
        return None
    return read_record(qid, entry.value)


async def request_flush(nc: NATS, wait: float) -> Flushed:
    """Ask the running sends to flush (SEND-25); one of them answers within ``wait`` s."""
    try:
        reply = await nc.request(subjects.ADMIN_SEND_FLUSH, FlushRequest().encode(), timeout=wait)
    except nats.errors.NoRespondersError as err:
        raise Unavailable(
            f"no send is running (nobody listens on {subjects.ADMIN_SEND_FLUSH})"
        ) from err
    except nats.errors.TimeoutError as err:
        raise Unavailable(f"no send answered within {wait:g} s") from err
    try:
        return Flushed.decode(reply.data)
    except ValidationError as err:
        raise Unavailable("send's answer could not be read") from err


# --- the commands ---------------------------------------------------------------------------

QueueCommand = Callable[[NATS, argparse.Namespace, float], Awaitable[tuple[str, int]]]


async def _stat(nc: NATS, args: argparse.Namespace, now: float) -> tuple[str, int]:
    js = nc.jetstream()
    return format_stat(await count_records(js), await todo_pending(js)), EXIT_OK


async def _list(nc: NATS, args: argparse.Namespace, now: float) -> tuple[str, int]:
    return format_list(await read_records(nc.jetstream()), now), EXIT_OK


async def _show(nc: NATS, args: argparse.Namespace, now: float) -> tuple[str, int]:
    found = await read_one(nc.jetstream(), args.id)
    if found is None:
        raise Refused(f"no message {args.id} in the queue (delivered, or not preprocessed yet)")
    if not isinstance(found, QueueRecord):
        raise Refused(f"the record of {args.id} cannot be read: {found.reason}")
    return format_show(found, now), EXIT_OK


async def _flush(nc: NATS, args: argparse.Namespace, now: float) -> tuple[str, int]:
    answer = await request_flush(nc, args.timeout)
    if answer.error and not answer.failed:
        raise Unavailable(f"send could not flush: {printable(answer.error)}")
    return format_flushed(answer), EXIT_TEMPORARY if answer.failed else EXIT_OK


async def _shunted(nc: NATS, args: argparse.Namespace, now: float) -> tuple[str, int]:
    return format_shunted(await read_shunted(nc.jetstream()), now), EXIT_OK


async def _requeue(nc: NATS, args: argparse.Namespace, now: float) -> tuple[str, int]:
    js = nc.jetstream()
    entries = await read_shunted(js)
    chosen = [e for e in entries if str(e.seq) == args.id or (e.queue_id and e.queue_id == args.id)]
    if not chosen:
        raise Refused(f"nothing shunted with sequence or queue id {printable(args.id)}")
    lines = []
    for entry in chosen:
        await requeue_one(js, entry.seq)
        lines.append(f"requeued {entry.seq} to {entry.origin}\n")
    return "".join(lines), EXIT_OK


def _shunt_id(text: str) -> str:
    if text.isdigit() and 0 < int(text) < 2**63:
        return str(int(text))
    return _queue_id(text)


def _queue_id(text: str) -> str:
    try:
        return parse_queue_id(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"not a number of seconds between 0 and 3600: {text!r}")
    return value


async def read_shunted(js: JetStreamContext) -> list[Shunted]:
    """Every entry of ``QMESH_SHUNT``, oldest first (headers only are shown)."""
    try:
        info = await js.stream_info(subjects.STREAM_SHUNT)
    except NotFoundError:
        return []
    entries = []
    seq, last = info.state.first_seq, info.state.last_seq
    while info.state.messages and seq <= last:
        try:
            raw = await js.get_msg(
                subjects.STREAM_SHUNT, seq, subject=subjects.shunt_filter(), next=True
            )
        except NotFoundError:
            break
        if raw.seq is None:
            break
        entries.append(Shunted.read(raw.seq, raw.headers))
        seq = raw.seq + 1
    return entries


async def requeue_one(js: JetStreamContext, seq: int) -> None:
    """Publish the entry's event to its origin subject, then delete it from the shunt.

    A fresh ``Nats-Msg-Id`` (:func:`~qmesh.bus.shunt.requeue_headers`); every consumer
    treats a repeated event as a repeat (records are compare-and-set, deliveries
    keyed by queue id and recipient), so a requeue that dies before the delete is harmless.
    """
    raw = await js.get_msg(subjects.STREAM_SHUNT, seq)
    entry = Shunted.read(seq, raw.headers)
    if entry.origin not in SHUNT_OF_ORIGIN:
        raise Refused(f"entry {seq} names no queue subject it came from")
    await js.publish(
        entry.origin,
        raw.data or b"",
        timeout=READ_TIMEOUT,
        headers=requeue_headers(seq),
    )
    await js.delete_msg(subjects.STREAM_SHUNT, seq)


def add_queue_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``queue`` on the root ``qmesh`` parser."""
    queue = sub.add_parser("queue", help="look at the queue, or flush it")
    qsub = queue.add_subparsers(dest="action", required=True)
    qsub.add_parser("stat", help="count messages (qmail-qstat)").set_defaults(queue=_stat)
    qsub.add_parser("list", help="list messages and recipients (qmail-qread)").set_defaults(
        queue=_list
    )
    p = qsub.add_parser("show", help="the whole record of one message")
    p.add_argument("id", type=_queue_id, metavar="ID")
    p.set_defaults(queue=_show)
    p = qsub.add_parser("flush", help="try every waiting delivery now (qmail-send's ALRM)")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=FLUSH_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for send's answer (default {FLUSH_TIMEOUT:g})",
    )
    p.set_defaults(queue=_flush)
    qsub.add_parser(
        "shunted", help="events given up on after failing again and again (the shunt)"
    ).set_defaults(queue=_shunted)
    p = qsub.add_parser("requeue", help="put a shunted event back where it came from")
    p.add_argument("id", type=_shunt_id, metavar="ID", help="its sequence, or a queue id")
    p.set_defaults(queue=_requeue)


async def run_queue(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run one parsed ``queue`` command; returns the exit status."""
    env = os.environ if environ is None else environ
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    command = f"qmesh queue {args.action}"
    handler: QueueCommand = args.queue
    try:
        async with nats_session(env, "admin") as nc:
            text, code = await handler(nc, args, clock())
    except Refused as e:
        err.write(f"{command}: {e}\n")
        return EXIT_REFUSED
    except Temporary as e:
        err.write(f"{command}: {e.text}\n")
        return EXIT_TEMPORARY
    except _NATS_ERRORS as e:
        err.write(f"{command}: cannot read the queue ({e or type(e).__name__})\n")
        return EXIT_TEMPORARY
    out.write(text)
    if code != EXIT_OK:
        err.write(f"{command}: some messages could not be flushed; try again\n")
    return code
