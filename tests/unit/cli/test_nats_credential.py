"""How a command finds its NATS credential: the same way it finds the URL (hardening #2)."""

from __future__ import annotations

from pathlib import Path

from qmesh.cli.connect import resolve_nats
from qmesh.cli.natsusers import ensure_passwords, password_file


def _up_site(data: Path) -> None:
    (data / "nats.url").parent.mkdir(parents=True, exist_ok=True)
    (data / "nats.url").write_text("nats://127.0.0.1:5555\n")
    ensure_passwords(data, ["admin", "smtpd"])


def test_commands_use_qmesh_ups_admin_credential(tmp_path: Path) -> None:
    _up_site(tmp_path)
    found = resolve_nats({"QMESH_DATA": str(tmp_path)})
    assert found.nats_url == "nats://127.0.0.1:5555"
    assert found.nats_user == "qmesh-admin"
    assert found.nats_password_file == password_file(tmp_path, "admin")


def test_an_explicit_server_comes_with_its_own_credential(tmp_path: Path) -> None:
    _up_site(tmp_path)
    env = {
        "QMESH_DATA": str(tmp_path),
        "QMESH_NATS_URL": "nats://10.0.0.1:4222",
        "QMESH_NATS_USER": "qmesh-admin",
        "QMESH_NATS_PASSWORD_FILE": "/etc/qmesh/secrets/nats/password",
    }
    found = resolve_nats(env)
    assert found.nats_url == "nats://10.0.0.1:4222"
    assert found.nats_password_file == Path("/etc/qmesh/secrets/nats/password")
    bare = resolve_nats({"QMESH_DATA": str(tmp_path), "QMESH_NATS_URL": "nats://10.0.0.1:4222"})
    assert bare.nats_user is None and bare.nats_password_file is None  # never sent elsewhere


def test_passwords_are_random_kept_and_owner_only(tmp_path: Path) -> None:
    first = ensure_passwords(tmp_path, ["admin", "smtpd"])
    assert first["admin"] != first["smtpd"] and len(first["admin"]) >= 32
    password_file(tmp_path, "admin").chmod(0o644)
    assert ensure_passwords(tmp_path, ["admin", "smtpd"]) == first
    assert password_file(tmp_path, "admin").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
