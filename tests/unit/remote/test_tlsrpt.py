"""RFC 8460 section 4.3: the result type each TLS failure is counted under (issue 11)."""

from __future__ import annotations

import ssl

import pytest

from qmesh.tlspolicy.dane import Tlsa
from qmesh.tlspolicy.mtasts import PolicyError
from services.remote.client import Attempt
from services.remote.consumer import session_result
from services.remote.tlsplan import TlsPlan, dane_plan
from services.remote.tlspolicy import fetch_failure
from services.remote.tlsrpt import handshake_failure, policy_type


def verify_error(code: int) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, "certificate verify failed")
    err.verify_code = code
    return err


@pytest.mark.parametrize(
    ("err", "result"),
    [
        (verify_error(10), "certificate-expired"),
        (verify_error(9), "certificate-expired"),
        (verify_error(62), "certificate-host-mismatch"),
        (verify_error(18), "certificate-not-trusted"),
        (verify_error(19), "certificate-not-trusted"),
        (verify_error(20), "certificate-not-trusted"),
        (verify_error(7), "validation-failure"),  # bad signature
        (ssl.SSLError(1, "wrong version number"), "validation-failure"),
        (ConnectionResetError(), "validation-failure"),
    ],
)
def test_handshake_failures(err: BaseException, result: str) -> None:
    assert handshake_failure(err) == result


@pytest.mark.parametrize(
    ("err", "result"),
    [
        (PolicyError("no mx"), "sts-policy-invalid"),
        (verify_error(62), "sts-webpki-invalid"),
        (verify_error(20), "sts-webpki-invalid"),
        (OSError("HTTP 404 from mta-sts.example.test"), "sts-policy-fetch-error"),
        (TimeoutError(), "sts-policy-fetch-error"),
    ],
)
def test_policy_fetch_failures(err: BaseException, result: str) -> None:
    assert fetch_failure(err) == result


def test_policy_types() -> None:
    assert (policy_type("mta-sts"), policy_type("dane")) == ("sts", "tlsa")


USABLE = Tlsa(3, 1, 1, b"x" * 32)
UNUSABLE = Tlsa(1, 1, 1, b"x" * 32)


@pytest.mark.parametrize(
    ("attempt", "plan", "result"),
    [
        (Attempt("delivered", "", tls=True), TlsPlan(None), "success"),
        (Attempt("delivered", "", tls=False), TlsPlan(None), "starttls-not-supported"),
        (
            Attempt("deferred", "", tls_result="certificate-expired"),
            TlsPlan(None),
            "certificate-expired",
        ),
        (Attempt("delivered", "", tls=True), dane_plan("mx.test", [USABLE]), "success"),
        (Attempt("delivered", "", tls=True), dane_plan("mx.test", [UNUSABLE]), "tlsa-invalid"),
    ],
)
def test_session_results(attempt: Attempt, plan: TlsPlan, result: str) -> None:
    assert session_result(attempt, plan) == result
