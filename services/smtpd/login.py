"""SMTP AUTH credentials against the directory (SMTPD-81), throttled across the cluster.

The directory authenticator already makes every failure look like a wrong password, in reply
and in time (LOCAL-59); :class:`~qmesh.limits.logins.Throttle` adds the delay that grows with
the client's failures and the block after ``authfailures`` of them (docs/defences.md). The
outcome is counted in ``qmesh_smtpd_auth_total``. Passwords and login names are never logged.
"""

from __future__ import annotations

import logging

from qmesh.contract.errors import Temporary
from qmesh.directory.authenticate import DirectoryAuthenticator
from qmesh.limits.logins import Throttle
from services.smtpd import metrics
from services.smtpd.session import LoginBlocked

log = logging.getLogger(__name__)


class SmtpLogin:
    def __init__(self, directory: DirectoryAuthenticator, throttle: Throttle) -> None:
        self._directory = directory
        self._throttle = throttle

    def bound(self, remote: str) -> ClientLogin:
        """The authenticator of one connection from ``remote``."""
        return ClientLogin(self, remote)

    async def authenticate(self, remote: str, login: str, password: str) -> str | None:
        try:
            attempt = await self._throttle.attempt(self._directory, remote, login, password)
        except Temporary:
            metrics.AUTH.labels("tempfail").inc()
            raise
        if attempt.refusal == "blocked":
            metrics.AUTH.labels("blocked").inc()
            raise LoginBlocked
        if attempt.account is None:
            metrics.AUTH.labels("failed").inc()
            return None
        metrics.AUTH.labels("ok").inc()
        log.info("smtpd.auth_ok", extra={"account": str(attempt.account), "remote": remote})
        return str(attempt.account)


class ClientLogin:
    def __init__(self, login: SmtpLogin, remote: str) -> None:
        self._login = login
        self._remote = remote

    async def authenticate(self, login: str, password: str) -> str | None:
        return await self._login.authenticate(self._remote, login, password)
