"""Streams, consumers and KV buckets, created or updated idempotently at start (ARCH section 4).

Every service calls :func:`provision_streams` and the KV buckets it uses; each consumer service
creates its own durable consumer with :func:`ensure_consumer`. Creating twice is harmless and a
changed setting (for example ``max_ack_pending`` from a concurrency control) is applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from qmesh.contract import subjects

log = logging.getLogger(__name__)

DUPLICATE_WINDOW = 300.0  # seconds; ARCHITECTURE asks for >= 2 minutes
MAX_EVENT_BYTES = 1024 * 1024  # events only: bodies live in object storage
ACK_WAIT = 30.0
LEASE_TTL = 120.0


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy = RetentionPolicy.WORK_QUEUE


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(subjects.STREAM_TODO, (subjects.TODO,)),
    StreamSpec(subjects.STREAM_LOCAL, (subjects.JOB_LOCAL,)),
    StreamSpec(subjects.STREAM_REMOTE, (subjects.JOB_REMOTE,)),
    StreamSpec(subjects.STREAM_RESULT, (subjects.RESULT_LOCAL, subjects.RESULT_REMOTE)),
    # hardening #11: kept (limits retention) until requeued or deleted by an operator
    StreamSpec(
        subjects.STREAM_SHUNT,
        (subjects.SHUNT_TODO, subjects.SHUNT_LOCAL, subjects.SHUNT_REMOTE, subjects.SHUNT_RESULT),
        RetentionPolicy.LIMITS,
    ),
)

KV_HISTORY = {subjects.KV_QUEUE: 1, subjects.KV_DIRECTORY: 5, subjects.KV_LEASES: 1}
TCPTO_TTL = 2 * 3600.0  # longer than the 64..97 minutes an address is skipped (REMOTE-22)
DELIVERIES_TTL = 8 * 86400.0  # longer than the longest queuelifetime a record can matter for
KV_TTL = {
    subjects.KV_LEASES: LEASE_TTL,
    subjects.KV_TCPTO: TCPTO_TTL,
    subjects.KV_DELIVERIES: DELIVERIES_TTL,
}


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
                pass  # created by another replica between the two calls
        await js.update_stream(config)


async def ensure_kv(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except (NotFoundError, BadRequestError):
        pass
    config = KeyValueConfig(
        bucket=bucket,
        history=KV_HISTORY.get(bucket, 1),
        ttl=KV_TTL.get(bucket),
        storage=StorageType.FILE,
        replicas=replicas,
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
