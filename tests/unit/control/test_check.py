"""``qmesh control check`` and the first control directory of ``qmesh up``."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from qmesh.cli.control import check_command, format_value
from qmesh.control import load_controls, write_default_controls


def test_default_directory_is_not_an_open_relay(tmp_path: Path) -> None:
    """SMTPD-42: a newcomer's directory accepts mail for its own name and relays for nobody."""
    control_dir = tmp_path / "control"
    write_default_controls(control_dir, "mail.example.test")
    controls = load_controls(control_dir, {})
    assert controls.me == "mail.example.test"
    assert controls.rcpthosts == frozenset({"mail.example.test"})
    assert controls.relayclients == ()
    assert controls.locals == ("mail.example.test",)
    assert controls.canonical_local_domain() == "mail.example.test"
    assert "./Maildir/" in controls.defaultdelivery.splitlines()


def test_default_directory_keeps_the_operators_files(control_dir: Path) -> None:
    (control_dir / "rcpthosts").write_text("example.test\n")
    write_default_controls(control_dir, "mail.example.test")
    assert (control_dir / "rcpthosts").read_text() == "example.test\n"
    assert (control_dir / "me").read_text() == "mail.example.test\n"


@pytest.mark.parametrize("me", ["", "two words", "bad/name", "mx.example.test\n", "-x.test"])
def test_default_directory_needs_a_host_name(tmp_path: Path, me: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        write_default_controls(tmp_path / "control", me)
    assert not (tmp_path / "control").exists()


def test_check_prints_every_value_and_source(
    control_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_default_controls(control_dir, "mx.example.test")
    assert check_command(control_dir, {"DATABYTES": "1000000"}) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and line[0].isalpha()}
    assert '"mx.example.test"  [file]' in rows["me"]
    assert "1000000  [env DATABYTES]" in rows["databytes"]
    assert "20  [default]" in rows["concurrencyremote"]
    assert '"mx.example.test"  [default]' in rows["bouncehost"]  # me fallback
    assert "(none)  [default]" in rows["tlscert"]
    assert "warning" not in out
    assert out.endswith("ok\n")


def test_check_lists_every_error_and_fails(
    control_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (control_dir / "bounceformat").write_text("html\n")
    (control_dir / "relayclients").write_text("10.0.0.0/8\nlocalhost\n")
    (control_dir / "rcpthost").write_text("typo.test\n")
    assert check_command(control_dir, {}) == 1
    out = capsys.readouterr().out
    assert "error: control/bounceformat line 1: expected one of dsn, qsbmf" in out
    assert "error: control/relayclients line 2: 'localhost' is not an IP address" in out
    assert "warning: rcpthost: not a control file" in out
    assert "warning: rcpthosts is missing" in out
    assert "warning: me is missing" in out
    assert "2 error(s)" in out


def test_check_of_a_missing_directory_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_command(tmp_path / "nowhere", {}) == 1
    assert "does not exist" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "(none)"),
        (True, "1"),
        ("", '""'),
        ("./Maildir/\n", '"./Maildir/\\n"'),
        (frozenset({"b.test", "a.test"}), "a.test b.test"),
        ((), "(empty)"),
        ((("virt.test", "carol"),), "virt.test:carol"),
        (((ipaddress.ip_network("10.0.0.0/8"), ""),), "10.0.0.0/8:"),
        ((587, 465), "587 465"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_check_warns_of_tls_files_not_readable_here(
    control_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """chart #1: a pod without the TLS Secret passes the check, and is told about the files."""
    (control_dir / "me").write_text("mx.example.test\n")
    (control_dir / "rcpthosts").write_text("mx.example.test\n")
    (control_dir / "tlscert").write_text(f"{tmp_path}/tls/tls.crt\n")
    (control_dir / "tlskey").write_text(f"{tmp_path}/tls/tls.key\n")
    assert check_command(control_dir, {}) == 0
    out = capsys.readouterr().out
    assert f"warning: tlscert: {tmp_path}/tls/tls.crt is not readable here" in out
    assert f"warning: tlskey: {tmp_path}/tls/tls.key is not readable here" in out
