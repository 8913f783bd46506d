"""Streams, consumers and KV buckets: created by the setup step only, looked up by services.

:func:`provision` is the one place that creates or updates them (ARCH section 4): ``qmesh up``'s
bootstrap and ``qmesh provision`` (the chart's setup Job) run it with the admin NATS user.
Running it twice is harmless, and a changed setting is applied: the durable consumers'
``max_ack_pending`` comes from ``concurrencylocal``/``concurrencyremote`` (capped by
``spawnlimit``), read from the control files at that moment, so a changed limit takes effect
on the next ``qmesh up``, ``qmesh provision`` or ``helm upgrade``.

Services never create or update anything (ARCH-21, hardening #3): their NATS users may not.
They look up what they use with :func:`open_kv`, :func:`await_streams` and
:func:`bind_consumer`, and wait (not ready) until the setup step has made it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.control.values import Controls
from qmesh.limits.rules import BUCKET_MAX_AGE as LIMITS_TTL
from qmesh.lists.names import LISTS_PENDING

log = logging.getLogger(__name__)

DUPLICATE_WINDOW = 300.0  # seconds; ARCHITECTURE asks for >= 2 minutes
MAX_EVENT_BYTES = 1024 * 1024  # events only: bodies live in object storage
ACK_WAIT = 30.0
LEASE_TTL = 120.0
JETSTREAM_WAIT = 120.0  # seconds the setup step waits for a cluster to elect its leader
JETSTREAM_PAUSE = 1.0


class NotProvisioned(Temporary):
    """A stream, bucket or consumer the service needs has not been made by the setup step."""


class JetStreamUnavailable(Temporary):
    """JetStream did not answer the setup step in time: a cluster without a leader."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy = RetentionPolicy.WORK_QUEUE


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    stream: str
    durable: str
    max_ack_pending: int
    ack_wait: float = ACK_WAIT


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(subjects.STREAM_TODO, (subjects.TODO,)),
    StreamSpec(subjects.STREAM_LOCAL, (subjects.JOB_LOCAL,)),
    StreamSpec(subjects.STREAM_REMOTE, (subjects.JOB_REMOTE,)),
    StreamSpec(subjects.STREAM_RESULT, (subjects.RESULT_LOCAL, subjects.RESULT_REMOTE)),
    # hardening #11: kept (limits retention) until requeued or deleted by an operator
    StreamSpec(
        subjects.STREAM_SHUNT,
        (
            subjects.SHUNT_TODO,
            subjects.SHUNT_LOCAL,
            subjects.SHUNT_REMOTE,
            subjects.SHUNT_RESULT,
            subjects.SHUNT_LISTS,
        ),
        RetentionPolicy.LIMITS,
    ),
    StreamSpec(subjects.STREAM_LISTS, (subjects.JOB_LISTS,)),  # mailing lists (issue #15)
)

BUCKETS = (
    subjects.KV_QUEUE,
    subjects.KV_DIRECTORY,
    subjects.KV_LEASES,
    subjects.KV_TCPTO,
    subjects.KV_DELIVERIES,
    subjects.KV_MTASTS,  # key <domain>, each policy with its max_age (RFC 8461, issue 11)
    subjects.KV_LISTS,
    subjects.KV_MAILBOX,
    subjects.KV_LIMITS,  # cluster-wide limits, anvil (defences #12)
    subjects.KV_WEBSESSIONS,
    subjects.KV_MAILSESSIONS,  # webmail's own: its user cannot touch admin's sessions
)
KV_HISTORY = {subjects.KV_QUEUE: 1, subjects.KV_DIRECTORY: 5, subjects.KV_LEASES: 1}
TCPTO_TTL = 2 * 3600.0  # longer than the 64..97 minutes an address is skipped (REMOTE-22)
DELIVERIES_TTL = 8 * 86400.0  # longer than the longest queuelifetime a record can matter for
WEBSESSIONS_TTL = 8 * 3600.0  # the longest a browser session lives (issue 14)
MTASTS_TTL = 31557600.0  # the longest max_age a policy may have (RFC 8461 section 3.2)
KV_TTL = {
    subjects.KV_MTASTS: MTASTS_TTL,
    subjects.KV_LEASES: LEASE_TTL,
    subjects.KV_TCPTO: TCPTO_TTL,
    subjects.KV_DELIVERIES: DELIVERIES_TTL,
    subjects.KV_LIMITS: LIMITS_TTL,
    subjects.KV_WEBSESSIONS: WEBSESSIONS_TTL,
    subjects.KV_MAILSESSIONS: WEBSESSIONS_TTL,
}


# send's own consumers: events in flight per replica group, not a qmail control
SEND_TODO_PENDING = 32
SEND_RESULT_PENDING = 64


def channel_concurrency(controls: Controls, channel: subjects.Channel) -> int:
    """``concurrencylocal``/``concurrencyremote`` capped by ``spawnlimit``; at least one."""
    limit = controls.concurrencylocal if channel == "local" else controls.concurrencyremote
    return max(1, min(limit, controls.spawnlimit))


def consumer_specs(controls: Controls) -> tuple[ConsumerSpec, ...]:
    """The durable consumers, their cluster-wide limits read from the controls."""
    return (
        ConsumerSpec(subjects.STREAM_TODO, subjects.CONSUMER_SEND_TODO, SEND_TODO_PENDING),
        ConsumerSpec(subjects.STREAM_RESULT, subjects.CONSUMER_SEND_RESULT, SEND_RESULT_PENDING),
        *(
            ConsumerSpec(
                subjects.job_stream(channel),
                subjects.job_consumer(channel),
                channel_concurrency(controls, channel),
            )
            for channel in subjects.CHANNELS
        ),
        ConsumerSpec(subjects.STREAM_LISTS, subjects.CONSUMER_LISTS, LISTS_PENDING),
    )


# --- the setup step (admin user) ------------------------------------------------------------


def stream_config(spec: StreamSpec, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        retention=spec.retention,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        duplicate_window=DUPLICATE_WINDOW,
        max_msg_size=MAX_EVENT_BYTES,
        num_replicas=replicas,
    )


async def provision_streams(js: JetStreamContext, replicas: int = 1) -> None:
    for spec in STREAMS:
        config = stream_config(spec, replicas)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                log.info("nats.stream_created", extra={"stream": spec.name})
                continue
            except BadRequestError:
                pass  # created by another setup run between the two calls
        await js.update_stream(config)


async def ensure_kv(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    """Open or create the bucket, with direct gets: a read names its key in the subject, so a
    NATS user may be allowed some keys only (send's and pop3d's leases)."""
    try:
        info = await js.stream_info(f"KV_{bucket}")
    except NotFoundError:
        pass
    else:
        if not info.config.allow_direct or not info.config.allow_msg_ttl:
            # made before direct gets, or per-message TTLs (send's removal markers), were asked for
            info.config.allow_direct = True
            info.config.allow_msg_ttl = True
            await js.update_stream(info.config)
        return await js.key_value(bucket)
    config = KeyValueConfig(
        bucket=bucket,
        history=KV_HISTORY.get(bucket, 1),
        ttl=KV_TTL.get(bucket),
        storage=StorageType.FILE,
        replicas=replicas,
        direct=True,
    )
    try:
        return await js.create_key_value(config)
    except BadRequestError:
        return await js.key_value(bucket)


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    *,
    max_ack_pending: int,
    ack_wait: float = ACK_WAIT,
) -> None:
    """Create or update a durable pull consumer with explicit acks."""
    config = ConsumerConfig(
        name=durable,
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
        max_waiting=512,
    )
    await js.add_consumer(stream, config)


async def provision(
    js: JetStreamContext,
    consumers: Iterable[ConsumerSpec],
    replicas: int = 1,
    *,
    wait: float = JETSTREAM_WAIT,
) -> None:
    """Every stream, bucket and durable consumer, created or brought up to date.

    A NATS cluster that has just started answers 503 ("JetStream not enabled for account",
    "temporarily unavailable") or not at all until its servers have elected a leader, and the
    chart starts the setup Job beside them: the whole step, which may be repeated, is tried
    again each second for ``wait`` seconds, then :class:`JetStreamUnavailable`.
    """
    consumers = tuple(consumers)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            await _provision(js, consumers, replicas)
            return
        except (ServiceUnavailableError, NatsTimeout, NoRespondersError) as err:
            reason = str(err) or type(err).__name__
            if loop.time() >= deadline:
                raise JetStreamUnavailable(
                    f"JetStream did not answer within {wait:.0f}s: {reason}"
                ) from err
            log.warning("nats.jetstream_waiting", extra={"reason": reason})
            await asyncio.sleep(JETSTREAM_PAUSE)


async def _provision(
    js: JetStreamContext, consumers: tuple[ConsumerSpec, ...], replicas: int
) -> None:
    await provision_streams(js, replicas)
    for bucket in BUCKETS:
        await ensure_kv(js, bucket, replicas)
    for spec in consumers:
        await ensure_consumer(
            js,
            spec.stream,
            spec.durable,
            max_ack_pending=spec.max_ack_pending,
            ack_wait=spec.ack_wait,
        )
        log.info(
            "nats.consumer_provisioned",
            extra={"consumer": spec.durable, "max_ack_pending": spec.max_ack_pending},
        )


# --- services (look up only) ----------------------------------------------------------------

SETUP_HINT = "not provisioned yet (qmesh up's bootstrap or qmesh provision makes it)"


async def await_streams(js: JetStreamContext, names: Iterable[str]) -> None:
    """:class:`NotProvisioned` unless every named stream exists."""
    for name in names:
        try:
            await js.stream_info(name)
        except NotFoundError as err:
            raise NotProvisioned(f"stream {name} {SETUP_HINT}") from err


async def open_kv(js: JetStreamContext, bucket: str) -> KeyValue:
    """The bucket's handle; :class:`NotProvisioned` if it does not exist."""
    try:
        return await js.key_value(bucket)
    except NotFoundError as err:
        raise NotProvisioned(f"KV bucket {bucket} {SETUP_HINT}") from err


async def bind_consumer(js: JetStreamContext, stream: str, durable: str) -> ConsumerInfo:
    """The durable consumer's info; :class:`NotProvisioned` if it does not exist."""
    try:
        info: ConsumerInfo = await js.consumer_info(stream, durable)
    except NotFoundError as err:
        raise NotProvisioned(f"consumer {stream}/{durable} {SETUP_HINT}") from err
    return info
