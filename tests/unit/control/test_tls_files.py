"""The files tlscert and tlskey name are opened by the services that serve TLS, at startup
(CTL-06, SMTPD-80, POP3-41), and by no one else (chart #1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmesh.control import ControlError, load_controls
from qmesh.control.registry import REGISTRY
from qmesh.runtime.tls import TlsContexts
from tests.servers import self_signed


def controls_naming(control_dir: Path, cert: Path, key: Path) -> TlsContexts:
    control_dir.mkdir(exist_ok=True)
    (control_dir / "tlscert").write_text(f"{cert}\n")
    (control_dir / "tlskey").write_text(f"{key}\n")
    controls = load_controls(control_dir, {})
    return TlsContexts(lambda: controls)


def test_only_the_tls_listeners_own_the_tls_controls() -> None:
    """The chart mounts the TLS Secret only in these services (tests/deploy checks it)."""
    assert REGISTRY["tlscert"].used_by == REGISTRY["tlskey"].used_by == ("smtpd", "pop3d", "imapd")


def test_a_readable_pair_loads_at_startup(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls", "mx.example.test")
    assert controls_naming(tmp_path / "control", cert, key).current() is not None


@pytest.mark.parametrize("missing", ["tlscert", "tlskey"])
def test_a_pair_that_is_not_there_stops_a_tls_service_at_startup(
    tmp_path: Path, missing: str
) -> None:
    cert, key = self_signed(tmp_path / "tls", "mx.example.test")
    absent = tmp_path / "not-mounted" / "tls.pem"
    if missing == "tlscert":
        cert = absent
    else:
        key = absent
    with pytest.raises(ControlError, match=rf"control/{missing}: names .*not a readable file"):
        controls_naming(tmp_path / "control", cert, key)


def test_a_pair_that_does_not_load_stops_a_tls_service_at_startup(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path / "tls", "mx.example.test")
    _, other_key = self_signed(tmp_path / "other", "mx.example.test")
    with pytest.raises(ControlError, match=r"control/tlscert: .* does not load"):
        controls_naming(tmp_path / "control", cert, other_key)
