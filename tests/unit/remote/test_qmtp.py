"""QMTP client framing (QMTP-02, QMTP-03, QMTP-31, QMTP-33)."""

from __future__ import annotations

import pytest

from services.remote.qmtp import Malformed, envelope_tail, netstring, package_head, parse_length


def test_qmtp_02_netstrings() -> None:
    assert netstring(b"hello world!") == b"12:hello world!,"
    assert netstring(b"") == b"0:,"


def test_qmtp_03_31_package_is_lf_encoded_stored_form_sender_and_recipients() -> None:
    stored = b"Subject: x\n\nno final LF"
    package = package_head(len(stored)) + stored + envelope_tail("", "bob@example.test")
    # QMTP-31: nothing appended to a partial last line; QMTP-33: the null sender is empty
    assert package == (b"24:\nSubject: x\n\nno final LF," + b"0:," + b"20:16:bob@example.test,,")


@pytest.mark.parametrize("digits", [b"", b"x", b"12345678901", b"-1"])
def test_qmtp_05_bad_response_lengths(digits: bytes) -> None:
    with pytest.raises(Malformed):
        parse_length(digits)
