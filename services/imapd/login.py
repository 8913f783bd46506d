"""LOGIN and AUTHENTICATE PLAIN against the directory, throttled as pop3d's (#13, defences #12).

Unknown, disabled and malformed names fail exactly like a wrong password (POP3-05 carried
over): ``NO [AUTHENTICATIONFAILED]`` after the delay of :class:`~qmesh.limits.logins.Throttle`,
which grows with the client's failures across the cluster. A client past ``authfailures`` is
``NO [UNAVAILABLE]`` before its password is looked at (RFC 5530), and so is a directory that
cannot be read: never a login failure.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from pymap.config import IMAPConfig
from pymap.exceptions import (
    AuthorizationFailure,
    InvalidAuth,
    NotSupportedError,
    ResponseError,
    TemporaryFailure,
)
from pymap.interfaces.login import IdentityInterface, LoginInterface
from pymap.interfaces.token import TokensInterface
from pymap.parsing.response import ResponseCode, ResponseNo
from pymap.user import UserMetadata
from pysasl.creds.plain import PlainCredentials
from pysasl.creds.server import ServerCredentials

from qmesh.contract.errors import Temporary
from qmesh.directory.authenticate import Account
from qmesh.limits.logins import Throttle
from services.imapd.backend import Folders
from services.imapd.ports import Authenticator, Recorder
from services.imapd.session import Session

log = logging.getLogger(__name__)

FolderFactory = Callable[[Account], Folders]
BLOCKED = "Too many failed logins; try again later."


class Unavailable(ResponseError):
    """``NO [UNAVAILABLE]`` (RFC 5530): this login cannot be tried now, whatever the password."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self._raw = msg.encode("utf-8")

    def get_response(self, tag: bytes) -> ResponseNo:
        return ResponseNo(tag, self._raw, ResponseCode.of(b"UNAVAILABLE"))


class DirectoryLogin(LoginInterface):
    def __init__(
        self,
        authenticator: Authenticator,
        folders: FolderFactory,
        config: IMAPConfig,
        recorder: Recorder,
        throttle: Throttle,
        remote: str,
    ) -> None:
        self._auth = authenticator
        self._folders = folders
        self._config = config
        self._recorder = recorder
        self._throttle = throttle
        self._remote = remote

    @property
    def tokens(self) -> TokensInterface:
        raise NotSupportedError("Tokens are not supported.")

    async def authenticate(self, credentials: ServerCredentials) -> IdentityInterface:
        secret = credentials._secret if isinstance(credentials, PlainCredentials) else None
        if secret is None:
            raise InvalidAuth()
        try:
            attempt = await self._throttle.attempt(
                self._auth, self._remote, credentials.authcid, secret
            )
        except Temporary as err:
            self._recorder.login("tempfail")
            log.warning("imapd.login", extra={"outcome": "tempfail", "remote": self._remote})
            raise Unavailable("Unable to read the directory; try again later.") from err
        account = attempt.account
        if attempt.refusal == "blocked":
            self._recorder.login("blocked")
            raise Unavailable(BLOCKED)
        if account is None:  # the throttle has waited its delay
            self._recorder.login("failed")
            log.info(
                "imapd.login",
                extra={"outcome": "failed", "remote": self._remote, "attempt": attempt.failures},
            )
            raise InvalidAuth("Authentication failed.")
        self._recorder.login("ok")
        log.info("imapd.login", extra={"outcome": "ok", "remote": self._remote})
        return Identity(account, credentials.authcid, self)

    async def authorize(self, authenticated: IdentityInterface, authzid: str) -> IdentityInterface:
        if authzid and authzid != authenticated.name:
            raise AuthorizationFailure()
        return authenticated

    def session(self, identity: Identity) -> Session:
        return Session(identity.name, self._config, self._folders(identity.account))


class Identity(IdentityInterface):
    def __init__(self, account: Account, login_name: str, login: DirectoryLogin) -> None:
        self.account = account
        self._name = login_name
        self._login = login

    @property
    def name(self) -> str:
        return self._name

    @property
    def roles(self) -> frozenset[str]:
        return frozenset()

    @asynccontextmanager
    async def new_session(self) -> AsyncIterator[Session]:
        session = self._login.session(self)
        try:
            await session.mailbox_set.box.record()  # INBOX and the special-use folders
        except Temporary as err:
            raise TemporaryFailure("The mailbox is unavailable; try again later.") from err
        yield session

    async def new_token(self, *, expiration: datetime | None = None) -> str | None:
        return None

    async def get(self) -> UserMetadata:
        raise NotSupportedError()

    async def set(self, metadata: UserMetadata) -> int | None:
        raise NotSupportedError()

    async def delete(self) -> None:
        raise NotSupportedError()
