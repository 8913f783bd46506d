"""Browser sessions in a KV bucket: admin's ``qmesh_websessions``, webmail's its own.

A session is a random token in the browser's cookie; the bucket holds only the SHA-256 of it
(key ``session.<hex>``), so whoever reads the bucket cannot act as anyone. Each record carries
its own expiry besides the bucket's TTL, and the CSRF token of its forms. Every replica of a
service reads the same bucket, so any may serve a request. Failed logins are counted in
``qmesh_limits`` as every listener's (:mod:`qmesh.limits.logins`, defences #12).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable

from nats.errors import Error as NatsError
from nats.js.errors import Error as JsError
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, ValidationError

from qmesh.contract.errors import Temporary

log = logging.getLogger(__name__)

SESSION_LIFETIME = 8 * 3600.0  # as the bucket's TTL (qmesh.bus.provision.WEBSESSIONS_TTL)
TOKEN_BYTES = 32
_KV_ERRORS = (NatsError, JsError, OSError, TimeoutError)


class SessionRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = "qmesh.admin.session.v1"  # the stored name, kept for sessions already held
    login: str  # account@domain
    domain: str | None  # None: the system administrator
    csrf: str
    expires: float


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def tokens_match(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode()
    )


class Sessions:
    def __init__(self, kv: Callable[[], KeyValue], clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock

    def _bucket(self) -> KeyValue:
        try:
            return self._kv()
        except Exception as err:
            raise Temporary("the session store cannot be reached") from err

    async def create(self, login: str, domain: str | None) -> tuple[str, SessionRecord]:
        """A new session; returns the cookie token and the record."""
        token = new_token()
        record = SessionRecord(
            login=login,
            domain=domain,
            csrf=new_token(),
            expires=self._clock() + SESSION_LIFETIME,
        )
        try:
            await self._bucket().create(
                f"session.{_digest(token)}", record.model_dump_json().encode()
            )
        except _KV_ERRORS as err:
            raise Temporary("the session store cannot be reached") from err
        return token, record

    async def get(self, token: str | None) -> SessionRecord | None:
        if not token or len(token) > 128:
            return None
        try:
            entry = await self._bucket().get(f"session.{_digest(token)}")
        except KeyNotFoundError:
            return None
        except _KV_ERRORS as err:
            raise Temporary("the session store cannot be reached") from err
        try:
            record = SessionRecord.model_validate_json(entry.value or b"")
        except ValidationError:
            log.warning("web.session_invalid")
            return None
        if record.expires <= self._clock():
            return None
        return record

    async def delete(self, token: str | None) -> None:
        if not token or len(token) > 128:
            return
        try:
            await self._bucket().delete(f"session.{_digest(token)}")
        except _KV_ERRORS as err:
            raise Temporary("the session store cannot be reached") from err
