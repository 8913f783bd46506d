"""remote's Prometheus metrics, ``qmesh_remote_<what>_<unit>``; counted in the adapter."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERIES = Counter(
    "qmesh_remote_deliveries_total",
    "Remote deliveries by result (delivered, deferred, failed)",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "qmesh_remote_delivery_seconds",
    "Time from taking a job to publishing its result",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
)
CONNECTIONS = Counter(
    "qmesh_remote_connections_total",
    "Connection attempts by result (connected, refused, timeout, skipped: REMOTE-22)",
    ["result"],
)
SHUNTED = Counter(
    "qmesh_remote_shunted_total",
    "Events moved to stream QMESH_SHUNT after failing with a bug again and again (hardening #11)",
    ["consumer"],
)
DKIM = Counter(
    "qmesh_remote_dkim_messages_total",
    "Messages by DKIM signing result (signed, no_key, too_large, error) (issue 11)",
    ["result"],
)
TLS_POLICY = Counter(
    "qmesh_remote_tls_policy_total",
    "Connections under an MTA-STS or DANE policy by policy, mode and result (ok, failed, "
    "mx_mismatch); `testing` failures are only counted (RFC 8461, RFC 7672)",
    ["policy", "mode", "result"],
)
ARC = Counter(
    "qmesh_remote_arc_messages_total",
    "Messages by ARC sealing result (sealed_cv_none, sealed_cv_pass, sealed_cv_fail, "
    "not_checked, not_forwarded, no_key, unreadable_chain, chain_too_long, too_large, error) "
    "(RFC 8617, issue 11)",
    ["result"],
)
TLSRPT = Counter(
    "qmesh_remote_tlsrpt_sessions_total",
    "Sessions and policy lookups under MTA-STS or DANE by RFC 8460 policy type (sts, tlsa) and "
    "result type (success, starttls-not-supported, certificate-host-mismatch, "
    "certificate-expired, certificate-not-trusted, validation-failure, tlsa-invalid, "
    "dnssec-invalid, sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid)",
    ["policy_type", "result_type"],
)
