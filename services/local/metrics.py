"""local's Prometheus metrics, ``qmesh_local_<what>_<unit>``; counted in the adapters."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERIES = Counter("qmesh_local_deliveries_total", "Local deliveries by result", ["outcome"])
FORWARDS = Counter("qmesh_local_forwards_total", "Forward messages queued (LOCAL-23)")
PROGRAM_RUNS = Counter(
    "qmesh_local_program_runs_total",
    "Program deliveries by result (LOCAL-18)",
    ["result"],
)
MAILBOX_BYTES = Counter(
    "qmesh_local_mailbox_bytes_total", "Bytes written into mailboxes (LOCAL-24)"
)
DELIVERY_SECONDS = Histogram(
    "qmesh_local_delivery_seconds",
    "Time from taking a job to publishing its result",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600, 3600),
)
RCPTCHECKS = Counter(
    "qmesh_local_rcptchecks_total", "Recipient checks answered (LOCAL-34)", ["verdict"]
)
SHUNTED = Counter(
    "qmesh_local_shunted_total",
    "Events moved to stream QMESH_SHUNT after failing with a bug again and again (hardening #11)",
    ["consumer"],
)
