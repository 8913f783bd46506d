"""ARCHITECTURE section 2 and STYLE section 3: dependencies point one way.

services/* import qmesh; qmesh never imports a service; services never import each other;
domain modules import no infrastructure library.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("smtpd", "send", "local", "remote", "pop3d", "admin", "webmail")
# admin and webmail share their browser-security code through qmesh.web (issue 14)
ALLOWED: set[tuple[str, str]] = set()
INFRASTRUCTURE = ("nats", "minio", "aiosmtpd", "fastapi", "uvicorn", "socket", "prometheus_client")
DOMAIN_MODULES = [
    "qmesh/routing/classify.py",
    "qmesh/store/keys.py",
    "qmesh/store/maildir.py",
    "services/send/plan.py",
    "services/send/retry.py",
    "services/send/bounce.py",
    "services/send/dsn.py",
    "services/send/clean.py",
    "services/smtpd/policy.py",
    "services/local/resolve.py",
    "services/local/dotqmail.py",
    "services/local/delivery.py",
    "services/local/report.py",
    "services/local/vacation.py",
    "qmesh/limits/rules.py",
    "qmesh/web/forms.py",
    "qmesh/directory/roles.py",
]


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_there_is_code_to_check() -> None:
    assert len(python_files("qmesh")) > 10
    assert all((ROOT / "services" / s).is_dir() for s in SERVICES)


@pytest.mark.parametrize("path", python_files("qmesh"), ids=lambda p: str(p.relative_to(ROOT)))
def test_qmesh_never_imports_a_service(path: Path) -> None:
    assert not [m for m in imported(path) if m == "services" or m.startswith("services.")]


@pytest.mark.parametrize("service", SERVICES)
def test_services_never_import_each_other(service: str) -> None:
    others = [s for s in SERVICES if s != service]
    for path in python_files(f"services/{service}"):
        bad = [
            m
            for m in imported(path)
            if any(m.startswith(f"services.{o}") for o in others) and (service, m) not in ALLOWED
        ]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_domain_modules_import_no_infrastructure(module: str) -> None:
    bad = [m for m in imported(ROOT / module) if m.split(".")[0] in INFRASTRUCTURE]
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("service", ["send", "local"])
def test_arch_25_broad_credential_services_use_no_message_parser(service: str) -> None:
    """ARCH-25: send and local do not parse message content with a MIME/header library."""
    parsers = ("email", "mailparser", "flanker")
    for path in python_files(f"services/{service}"):
        bad = [m for m in imported(path) if m.split(".")[0] in parsers]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
