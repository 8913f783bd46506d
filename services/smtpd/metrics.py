"""smtpd's Prometheus metrics, ``qmesh_smtpd_<what>_<unit>``."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SESSIONS = Counter("qmesh_smtpd_sessions_total", "SMTP sessions opened", ["listener"])
MESSAGES = Counter("qmesh_smtpd_messages_total", "Messages by result", ["result"])
RECIPIENTS = Counter("qmesh_smtpd_recipients_total", "RCPT replies by reply code", ["code"])
BYTES = Counter("qmesh_smtpd_message_bytes_total", "Bytes of accepted messages")
ENQUEUE_SECONDS = Histogram(
    "qmesh_smtpd_enqueue_seconds",
    "Time from end of DATA to the durable enqueue",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SESSION_SECONDS = Histogram(
    "qmesh_smtpd_session_seconds",
    "Connection lifetime",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1200),
)
TLS = Counter("qmesh_smtpd_tls_sessions_total", "TLS started (STARTTLS or implicit)", ["listener"])
AUTH = Counter(
    "qmesh_smtpd_auth_total", "AUTH attempts by result (ok, failed, tempfail, blocked)", ["result"]
)
LIMITED = Counter(
    "qmesh_smtpd_limited_total",
    "Connections and messages refused by a cluster-wide limit, by the limit's control",
    ["limit"],
)
PROXIED = Counter(
    "qmesh_smtpd_proxy_headers_total",
    "PROXY protocol headers from trusted balancers, accepted or refused",
    ["result"],
)
RSPAMD = Counter(
    "qmesh_smtpd_rspamd_total",
    "Content filter answers by action (reject, soft reject, add header, no action, ...)"
    " and unavailable",
    ["action"],
)
DNSBL = Counter(
    "qmesh_smtpd_dnsbl_total",
    "DNS blocklist checks by result (listed, clean; failed per zone lookup)",
    ["result"],
)
DMARC = Counter(
    "qmesh_smtpd_dmarc_total",
    "Checks at the door by DMARC result (pass, fail, none, temperror, permerror)",
    ["result"],
)
