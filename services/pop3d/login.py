"""checkpassword for one POP3 connection, throttled across the cluster (POP3-04, defences #12).

The directory makes an unknown account and a wrong password alike (LOCAL-59);
:class:`~qmesh.limits.logins.Throttle` adds the delay that grows with the client's failures
(replacing the fixed one of POP3-04) and the block after ``authfailures`` of them.
"""

from __future__ import annotations

from qmesh.directory.authenticate import Account, DirectoryAuthenticator
from qmesh.limits.logins import Throttle
from services.pop3d.ports import LoginBlocked


class ThrottledLogin:
    def __init__(self, directory: DirectoryAuthenticator, throttle: Throttle, remote: str) -> None:
        self._directory = directory
        self._throttle = throttle
        self._remote = remote

    async def authenticate(self, login: str, password: str) -> Account | None:
        attempt = await self._throttle.attempt(self._directory, self._remote, login, password)
        if attempt.refusal == "blocked":
            raise LoginBlocked
        return attempt.account
