"""TLS reporting (RFC 8460): every session under an MTA-STS or DANE policy, named as a report
names it, and counted.

Policy types (section 4.4): ``sts`` (MTA-STS), ``tlsa`` (DANE). Result types (section 4.3):
``success``; negotiation failures ``starttls-not-supported``, ``certificate-host-mismatch``,
``certificate-expired``, ``certificate-not-trusted``, ``validation-failure``; policy failures
``tlsa-invalid``, ``dnssec-invalid`` (DANE), ``sts-policy-fetch-error``,
``sts-policy-invalid``, ``sts-webpki-invalid`` (MTA-STS). Each session or policy lookup is one
increment of ``qmesh_remote_tlsrpt_sessions_total{policy_type,result_type}`` and one
``remote.tlsrpt`` log line with the policy domain and MX, what an aggregate report sums per day.
Reports are not sent (a MAY of RFC 8460); the counter and the log hold what one would say.
"""

from __future__ import annotations

import logging
import ssl

from services.remote import metrics

log = logging.getLogger(__name__)

STS = "sts"
TLSA = "tlsa"
SUCCESS = "success"
STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
CERTIFICATE_EXPIRED = "certificate-expired"
CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
VALIDATION_FAILURE = "validation-failure"
TLSA_INVALID = "tlsa-invalid"
DNSSEC_INVALID = "dnssec-invalid"
STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
STS_POLICY_INVALID = "sts-policy-invalid"
STS_WEBPKI_INVALID = "sts-webpki-invalid"

# OpenSSL's X509_V_ERR_* codes behind an ssl.SSLCertVerificationError
_EXPIRED = {9, 10}  # not yet valid, has expired
_HOST = {62, 63, 64}  # hostname, email, IP address mismatch
_UNTRUSTED = {2, 18, 19, 20, 21, 27, 28}  # no issuer, self-signed, untrusted, rejected


def handshake_failure(err: BaseException) -> str:
    """The result type of a failed TLS handshake under a policy (section 4.3.1)."""
    if isinstance(err, ssl.SSLCertVerificationError):
        code = err.verify_code
        if code in _EXPIRED:
            return CERTIFICATE_EXPIRED
        if code in _HOST:
            return CERTIFICATE_HOST_MISMATCH
        if code in _UNTRUSTED:
            return CERTIFICATE_NOT_TRUSTED
    return VALIDATION_FAILURE


def policy_type(policy: str) -> str:
    """Our policy label (``mta-sts``, ``dane``) as RFC 8460 names it."""
    return TLSA if policy == "dane" else STS


def record(policy: str, result: str, *, domain: str, mx: str = "") -> None:
    """One session or policy lookup: counted, and logged for a report."""
    kind = policy_type(policy) if policy in ("dane", "mta-sts") else policy
    metrics.TLSRPT.labels(kind, result).inc()
    level = logging.DEBUG if result == SUCCESS else logging.INFO
    log.log(
        level,
        "remote.tlsrpt",
        extra={"policy_type": kind, "result_type": result, "domain": domain, "mx": mx},
    )
