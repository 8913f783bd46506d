"""SMTP AUTH credentials against the directory (SMTPD-81), with the failure delay.

The directory authenticator already makes every failure look like a wrong password; this adds
the delay of at least one second before ``535`` and counts the outcome. Passwords are never
logged.
"""

from __future__ import annotations

import asyncio
import logging

from qmesh.contract.errors import Temporary
from qmesh.directory.authenticate import DirectoryAuthenticator
from services.smtpd import metrics

log = logging.getLogger(__name__)

FAILURE_DELAY = 1.0


class SmtpLogin:
    def __init__(self, directory: DirectoryAuthenticator, delay: float = FAILURE_DELAY) -> None:
        self._directory = directory
        self._delay = delay

    async def authenticate(self, login: str, password: str) -> str | None:
        try:
            account = await self._directory.authenticate(login, password)
        except Temporary:
            metrics.AUTH.labels("tempfail").inc()
            raise
        if account is None:
            metrics.AUTH.labels("failed").inc()
            log.info("smtpd.auth_failed")
            await asyncio.sleep(self._delay)
            return None
        metrics.AUTH.labels("ok").inc()
        log.info("smtpd.auth_ok", extra={"account": str(account)})
        return str(account)
