"""LOGIN and AUTHENTICATE PLAIN against the directory, as pop3d checks passwords (#13).

Unknown, disabled and malformed names fail exactly like a wrong password, after the same
delay (POP3-04, POP3-05 carried over). A directory that cannot be read is ``NO [UNAVAILABLE]``,
never a login failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from pymap.config import IMAPConfig
from pymap.exceptions import AuthorizationFailure, InvalidAuth, NotSupportedError, TemporaryFailure
from pymap.interfaces.login import IdentityInterface, LoginInterface
from pymap.interfaces.token import TokensInterface
from pymap.user import UserMetadata
from pysasl.creds.plain import PlainCredentials
from pysasl.creds.server import ServerCredentials

from qmesh.contract.errors import Temporary
from qmesh.directory.authenticate import Account
from services.imapd.backend import Folders
from services.imapd.ports import Authenticator, Recorder
from services.imapd.session import Session

log = logging.getLogger(__name__)

FAILURE_DELAY = 1.0
FolderFactory = Callable[[Account], Folders]


class DirectoryLogin(LoginInterface):
    def __init__(
        self,
        authenticator: Authenticator,
        folders: FolderFactory,
        config: IMAPConfig,
        recorder: Recorder,
        *,
        failure_delay: float = FAILURE_DELAY,
    ) -> None:
        self._auth = authenticator
        self._folders = folders
        self._config = config
        self._recorder = recorder
        self._delay = failure_delay

    @property
    def tokens(self) -> TokensInterface:
        raise NotSupportedError("Tokens are not supported.")

    async def authenticate(self, credentials: ServerCredentials) -> IdentityInterface:
        secret = credentials._secret if isinstance(credentials, PlainCredentials) else None
        if secret is None:
            raise InvalidAuth()
        try:
            account = await self._auth.authenticate(credentials.authcid, secret)
        except Temporary as err:
            self._recorder.login("tempfail")
            raise TemporaryFailure("Unable to read the directory; try again later.") from err
        if account is None:
            self._recorder.login("failed")
            await asyncio.sleep(self._delay)
            raise InvalidAuth("Authentication failed.")
        self._recorder.login("ok")
        log.info("imapd.login", extra={"outcome": "ok"})
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
