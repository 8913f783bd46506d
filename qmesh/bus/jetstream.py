"""Connecting to NATS and publishing to JetStream with acknowledgement."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import APIError as JsApiError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.bus.base import PublishFailed
from qmesh.runtime.settings import Settings

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0
WRONG_LAST_SEQUENCE = (10071, 10164)  # JetStream's error codes for a failed compare-and-set


def inbox_prefix(name: str) -> str:
    """Replies to ``name`` arrive under ``_INBOX_<name>.``: its NATS user may subscribe there
    and nowhere else, so no service reads another's replies (ARCH-21, hardening #3)."""
    return f"_INBOX_{name}"


def connect_options(settings: Settings, name: str) -> dict[str, Any]:
    """``name`` is the role: a service's name, or ``admin`` for the command-line tools."""
    opts: dict[str, Any] = {
        "servers": [settings.nats_url],
        "name": f"qmesh-{name}",
        "inbox_prefix": inbox_prefix(name),
        "connect_timeout": 5,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
    }
    if settings.nats_creds:
        opts["user_credentials"] = str(settings.nats_creds)
    if settings.nats_user:
        opts["user"] = settings.nats_user
        opts["password"] = settings.nats_password()
    return opts


async def _log_error(err: Exception) -> None:
    log.debug("nats.error", extra={"reason": str(err) or type(err).__name__})


async def connect(settings: Settings, name: str, *, attempts: int = 0) -> NATS:
    """Connect, retrying with back-off (forever when ``attempts`` is 0).

    NATS being down at start is not a crash: the service keeps trying and ``/readyz`` names it.
    """
    delay = 0.2
    tried = 0
    while True:
        tried += 1
        opts = connect_options(settings, name)
        if attempts:
            # With max_reconnect_attempts=-1 nats.connect itself retries the first connection
            # forever; a caller that asked for a bounded number of attempts must see each fail.
            opts["max_reconnect_attempts"] = 1
            opts["error_cb"] = _log_error
        try:
            nc = await nats.connect(**opts)
            log.info(
                "nats.connected",
                extra={"url": nc.connected_url.netloc if nc.connected_url else settings.nats_url},
            )
            return nc
        except (TimeoutError, OSError, NatsError) as err:
            if attempts and tried >= attempts:
                raise
            log.warning("nats.connect_failed", extra={"reason": str(err) or type(err).__name__})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class JetStreamPublisher:
    """:class:`qmesh.bus.base.Publisher` on a JetStream context."""

    def __init__(self, js: JetStreamContext, timeout: float = PUBLISH_TIMEOUT) -> None:
        self._js = js
        self._timeout = timeout

    async def publish(self, subject: str, payload: bytes, *, msg_id: str) -> None:
        try:
            await self._js.publish(
                subject, payload, timeout=self._timeout, headers={"Nats-Msg-Id": msg_id}
            )
        except (TimeoutError, NatsError, JsError, OSError) as err:
            raise PublishFailed(str(err) or type(err).__name__) from err


async def kv_delete(
    kv: KeyValue, key: str, *, last: int, purge: bool = False, marker_ttl: float | None = None
) -> int:
    """Delete (or purge) ``key`` if its revision is still ``last``; the marker's revision.

    ``KeyValue.delete`` and ``purge`` drop the marker's revision, which a holder of a lease
    needs to take it again with one compare-and-set (``services.send.owner``), and ``purge``
    cannot be made conditional, which removing a record that others may change needs.
    Raise :class:`~nats.js.errors.KeyWrongLastSequenceError` if the key changed meanwhile.

    ``marker_ttl``: a purge's marker goes after that many seconds (a per-message TTL, for a
    bucket that allows them: :func:`allows_marker_ttl`); without it, it stays for good.
    """
    headers = {"KV-Operation": "DEL", "Nats-Expected-Last-Subject-Sequence": str(last)}
    if purge:
        headers["KV-Operation"] = "PURGE"
        headers["Nats-Rollup"] = "sub"
        if marker_ttl is not None:
            headers["Nats-TTL"] = str(int(marker_ttl))
    try:
        ack = await kv._js.publish(f"{kv._pre}{key}", b"", headers=headers)
    except JsApiError as err:
        if err.err_code in WRONG_LAST_SEQUENCE:
            raise KeyWrongLastSequenceError(description=err.description) from err
        raise
    return int(ack.seq)


async def allows_marker_ttl(kv: KeyValue) -> bool:
    """Whether the bucket's stream takes per-message TTLs (nats-server 2.11 and later, with
    ``allow_msg_ttl``, which the setup step turns on: :func:`qmesh.bus.provision.ensure_kv`)."""
    info = await kv._js.stream_info(kv._stream)
    return bool(info.config.allow_msg_ttl)


async def kv_delete_unanswered(kv: KeyValue, key: str, *, last: int) -> None:
    """Delete ``key`` if its revision is still ``last``, without asking for an answer.

    For a key whose deletion nothing depends on (a lease over a message that is gone): if the
    delete is refused or lost, the key stays until it is taken over or expires.
    """
    headers = {"KV-Operation": "DEL", "Nats-Expected-Last-Subject-Sequence": str(last)}
    await kv._js._nc.publish(f"{kv._pre}{key}", b"", headers=headers)
