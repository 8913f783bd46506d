"""send's Prometheus metrics, ``qmesh_send_<what>_<unit>``."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
