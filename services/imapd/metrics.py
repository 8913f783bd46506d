"""imapd's Prometheus metrics, ``qmesh_imapd_<what>_<unit>``, and the login Recorder."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.imapd.ports import LoginResult

SESSIONS = Counter("qmesh_imapd_sessions_total", "IMAP connections accepted", ["listener"])
LOGINS = Counter("qmesh_imapd_logins_total", "Login attempts by result", ["result"])
REFUSED = Counter(
    "qmesh_imapd_commands_refused_total",
    "Commands answered BAD before parsing: line or literal too long",
    ["reason"],
)
PROXIED = Counter(
    "qmesh_imapd_proxy_headers_total",
    "PROXY protocol headers from trusted balancers, accepted or refused",
    ["result"],
)
SESSION_SECONDS = Histogram(
    "qmesh_imapd_session_seconds",
    "Connection lifetime",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600),
)


class PrometheusRecorder:
    def login(self, result: LoginResult) -> None:
        LOGINS.labels(result).inc()
