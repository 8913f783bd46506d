"""pop3d's Prometheus metrics, ``qmesh_pop3d_<what>_<unit>``, and the session's Recorder."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.pop3d.ports import LoginResult

SESSIONS = Counter("qmesh_pop3d_sessions_total", "POP3 connections accepted", ["listener"])
LOGINS = Counter(
    "qmesh_pop3d_logins_total",
    "Login attempts by result (ok, failed, tempfail, in-use, blocked)",
    ["result"],
)
PROXIED = Counter(
    "qmesh_pop3d_proxy_headers_total",
    "PROXY protocol headers from trusted balancers, accepted or refused (malformed or missing)",
    ["result"],
)
LIMITED = Counter(
    "qmesh_pop3d_limited_total",
    "Connections refused by a cluster-wide limit, by the limit's control",
    ["limit"],
)
RETRIEVED = Counter("qmesh_pop3d_messages_retrieved_total", "Messages sent by RETR")
DELETED = Counter("qmesh_pop3d_messages_deleted_total", "Messages removed at QUIT")
SESSION_SECONDS = Histogram(
    "qmesh_pop3d_session_seconds",
    "Connection lifetime",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1200),
)


class PrometheusRecorder:
    """:class:`services.pop3d.ports.Recorder` on the counters above."""

    def login(self, result: LoginResult) -> None:
        LOGINS.labels(result).inc()

    def retrieved(self) -> None:
        RETRIEVED.inc()

    def deleted(self, count: int) -> None:
        if count:
            DELETED.inc(count)
