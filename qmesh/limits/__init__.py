"""Cluster-wide limits at the door (anvil): connections, message rates, failed logins.

:mod:`qmesh.limits.rules` decides over stored records (pure), :mod:`qmesh.limits.anvil` keeps
them in the ``qmesh_limits`` KV bucket, :mod:`qmesh.limits.logins` throttles password logins.
"""

from __future__ import annotations

from qmesh.control.values import Controls
from qmesh.limits.rules import Limits

__all__ = ["Limits", "limits_from"]


def limits_from(c: Controls) -> Limits:
    return Limits(
        client_connections=c.clientconnections,
        net_connections=c.netconnections,
        client_messages=c.clientmessages,
        client_recipients=c.clientrecipients,
        auth_failures=c.authfailures,
        login_failures=c.loginfailures,
        auth_block=float(c.authblock),
        auth_delay=c.authdelay / 1000.0,
    )
