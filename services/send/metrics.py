"""send's Prometheus metrics, ``qmesh_send_<what>_<unit>``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("qmesh_send_messages_total", "Messages preprocessed (new_msg)")
DELIVERIES = Counter(
    "qmesh_send_deliveries_total", "Delivery results recorded", ["channel", "outcome"]
)
BOUNCES = Counter("qmesh_send_bounces_total", "Bounces injected", ["kind"])
QUEUE_SECONDS = Histogram(
    "qmesh_send_queue_seconds",
    "Time from preprocessing to the end of a message",
    buckets=(0.1, 0.5, 1, 5, 30, 120, 600, 3600, 6 * 3600, 86400, 7 * 86400),
)
QUEUE_MESSAGES = Gauge(
    "qmesh_send_queue_messages",
    "Messages per stage: todo (not preprocessed), queue (records), local and remote (jobs "
    "waiting), shunt (events given up on)",
    ["stage"],
)
QUEUE_OLDEST = Gauge(
    "qmesh_send_queue_oldest_seconds", "Age of the oldest message in the stage", ["stage"]
)
ATTEMPTS = Histogram(
    "qmesh_send_delivery_attempts",
    "The attempt number of each recorded delivery result",
    ["channel"],
    buckets=(1, 2, 3, 5, 8, 13, 21, 34),
)
DEFERRALS = Counter(
    "qmesh_send_deferrals_total",
    "Temporary failures by recipient domain (remote only: local domains are few)",
    ["domain"],
)
SHUNTED = Counter(
    "qmesh_send_shunted_total",
    "Events moved to stream QMESH_SHUNT after failing with a bug again and again (hardening #11)",
    ["consumer"],
)
