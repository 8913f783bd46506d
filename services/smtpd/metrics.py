"""smtpd's Prometheus metrics, ``qmesh_smtpd_<what>_<unit>``."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SESSIONS = Counter("qmesh_smtpd_sessions_total", "SMTP sessions opened", ["listener"])
MESSAGES = Counter("qmesh_smtpd_messages_total", "Messages by result", ["result"])
RECIPIENTS = Counter("qmesh_smtpd_recipients_total", "RCPT commands by result", ["result"])
BYTES = Counter("qmesh_smtpd_message_bytes_total", "Bytes of accepted messages")
ENQUEUE_SECONDS = Histogram(
    "qmesh_smtpd_enqueue_seconds",
    "Time from end of DATA to the durable enqueue",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
