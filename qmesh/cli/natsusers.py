"""The NATS users of ``qmesh up``: one per service and one for the commands (ARCH-21).

The same users and permissions as the chart and the compose files: ``nats-permissions.json``
beside this module is generated from ``k8s/qmesh/files/nats-permissions.yaml`` by
``deploy/ci/gen-dev-config.py`` (``--check`` fails when it is stale). Each password is random,
made on the first run, and kept in ``$QMESH_DATA/secrets/nats-<role>`` (mode 0600, in a 0700
directory), so only the owner of the data directory can reach the bus (hardening #2).

Standard library only: ``deploy/ci/gen-dev-config.py`` renders the compose users with
:func:`render_accounts` too.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

ACCOUNT = "QMESH"
USER_PREFIX = "qmesh-"
ADMIN = "admin"
PERMISSIONS_FILE = "nats-permissions.json"
SECRETS_DIR = "secrets"
PASSWORD_BYTES = 30

Permissions = dict[str, dict[str, Any]]


def load_permissions() -> Permissions:
    """Role -> ``{"publish": [...], "subscribe": [...], "allow_responses": bool}``."""
    text = resources.files("qmesh.cli").joinpath(PERMISSIONS_FILE).read_text()
    loaded: Permissions = json.loads(text)
    return loaded


def user_name(role: str) -> str:
    return USER_PREFIX + role


def password_file(data: Path, role: str) -> Path:
    return data / SECRETS_DIR / f"nats-{role}"


def render_accounts(permissions: Permissions, passwords: Mapping[str, str]) -> dict[str, Any]:
    """The ``accounts`` block of a nats-server configuration, as data (NATS reads JSON)."""
    users = []
    for role, perm in permissions.items():
        rules: dict[str, Any] = {
            "publish": {"allow": perm["publish"]},
            "subscribe": {"allow": perm["subscribe"]},
        }
        if perm.get("allow_responses"):
            rules["allow_responses"] = True
        users.append({"user": user_name(role), "password": passwords[role], "permissions": rules})
    return {ACCOUNT: {"jetstream": "enabled", "users": users}}


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only the owner can read, replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def ensure_passwords(data: Path, roles: list[str]) -> dict[str, str]:
    """Each role's password, made on first use; files and directory kept owner-only."""
    directory = data / SECRETS_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    passwords = {}
    for role in roles:
        path = password_file(data, role)
        if not path.exists() or not path.read_text().strip():
            _write_private(path, secrets.token_urlsafe(PASSWORD_BYTES) + "\n")
        path.chmod(0o600)
        passwords[role] = path.read_text().strip()
    return passwords


def write_server_config(data: Path, config: Path) -> Path:
    """The nats-server configuration with every qmesh user; mode 0600."""
    permissions = load_permissions()
    passwords = ensure_passwords(data, list(permissions))
    body = {"accounts": render_accounts(permissions, passwords)}
    config.parent.mkdir(parents=True, exist_ok=True)
    _write_private(config, json.dumps(body, indent=2) + "\n")
    return config
