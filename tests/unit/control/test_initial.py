"""The controls ``qmesh up`` generates: limits a public server lives with, and POP3 without TLS
only on loopback (POP3-60, SMTPD-55, SMTPD-70, SMTPD-73; hardening #6, #7, #8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmesh.cli.bootstrap import ensure_control_dir
from qmesh.control import load_controls
from qmesh.control.initial import is_loopback
from qmesh.control.registry import REGISTRY


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_pop3plaintext_is_generated_on_for_a_loopback_listener(tmp_path: Path, host: str) -> None:
    assert ensure_control_dir(tmp_path / "control", listen_host=host)
    assert load_controls(tmp_path / "control", {}).pop3plaintext is True


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.25", "2001:db8::25", "mx.test"])
def test_pop3plaintext_is_never_generated_on_for_other_listeners(tmp_path: Path, host: str) -> None:
    """Hardening #8: QMESH_LISTEN_HOST off loopback means logins need TLS."""
    assert ensure_control_dir(tmp_path / "control", listen_host=host)
    assert load_controls(tmp_path / "control", {}).pop3plaintext is False


def test_a_loopback_default_is_turned_off_when_the_listeners_leave_loopback(
    tmp_path: Path,
) -> None:
    control = tmp_path / "control"
    ensure_control_dir(control, listen_host="127.0.0.1")
    assert not ensure_control_dir(control, listen_host="0.0.0.0")  # the directory exists
    assert load_controls(control, {}).pop3plaintext is False


def test_an_operators_pop3plaintext_is_left_alone(tmp_path: Path) -> None:
    control = tmp_path / "control"
    ensure_control_dir(control, listen_host="127.0.0.1")
    (control / "pop3plaintext").write_text("1\n")
    ensure_control_dir(control, listen_host="0.0.0.0")
    assert load_controls(control, {}).pop3plaintext is True


def test_generated_limits_are_the_registry_defaults(tmp_path: Path) -> None:
    """The limits are written out so the operator sees them; they agree with the registry."""
    control = tmp_path / "control"
    ensure_control_dir(control)
    controls = load_controls(control, {})
    for name in ("databytes", "timeoutsmtpd", "maxconnip"):
        assert (control / name).exists()
        assert getattr(controls, name) == REGISTRY[name].default


def test_the_sample_controls_agree_with_the_registry() -> None:
    """deploy/control (compose) ships the same limits as the registry."""
    sample = Path(__file__).parents[3] / "deploy" / "control"
    controls = load_controls(sample, {})
    for name in ("databytes", "timeoutsmtpd", "maxconnip"):
        assert getattr(controls, name) == REGISTRY[name].default


def test_loopback() -> None:
    assert is_loopback("127.8.9.10") and is_loopback("::1")
    assert not is_loopback("::ffff:192.0.2.1") and not is_loopback("0.0.0.0")
