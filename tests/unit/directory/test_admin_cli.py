"""The admin command forms operators script (LOCAL-58) and how commands find NATS."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from qmesh.cli.admin import add_admin_commands
from qmesh.cli.connect import DEFAULT_NATS_URL, resolve_nats_url


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qmesh")
    add_admin_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ("domain", "add", "example.test"),
        ("domain", "add", "example.test", "--postmaster", "boss@example.net"),
        ("domain", "list"),
        ("domain", "del", "example.test"),
        ("domain", "enable", "example.test"),
        ("domain", "disable", "example.test"),
        ("user", "add", "bob@example.test", "--password-stdin"),
        ("user", "add", "bob", "--no-password"),
        ("user", "list"),
        ("user", "list", "example.test"),
        ("user", "passwd", "bob@example.test", "--password-stdin"),
        ("user", "del", "bob@example.test"),
        ("user", "enable", "bob@example.test"),
        ("user", "disable", "bob@example.test"),
        ("user", "quota", "bob@example.test", "1000000"),
        ("user", "quota", "bob@example.test", "none"),
        ("rule", "set", "bob@example.test", ".qmail-foo"),
        ("rule", "show", "@example.test"),
        ("rule", "show", "@example.test", ".qmail-postmaster"),
        ("rule", "del", "bob@example.test", ".qmail"),
    ],
)
def test_documented_forms_parse(argv: tuple[str, ...]) -> None:
    args = parse(*argv)
    assert (args.command, args.action) == argv[:2]
    assert callable(args.admin)


@pytest.mark.parametrize(
    "argv",
    [
        ("user", "add", "bob@example.test"),  # a password source is required
        ("user", "add", "bob@example.test", "--password", "s3cret"),  # never on argv (LOCAL-58)
        ("user", "add", "bob", "--password-stdin", "--no-password"),
        ("rule", "set", "bob@example.test"),
        ("domain", "add"),
    ],
)
def test_malformed_commands_are_usage_errors(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_nats_url_from_environment_first(tmp_path: Path) -> None:
    (tmp_path / "nats.url").write_text("nats://127.0.0.1:5555\n")
    env = {"QMESH_NATS_URL": "nats://10.0.0.1:4222", "QMESH_DATA": str(tmp_path)}
    assert resolve_nats_url(env) == "nats://10.0.0.1:4222"


def test_nats_url_published_by_qmesh_up(tmp_path: Path) -> None:
    (tmp_path / "nats.url").write_text("nats://127.0.0.1:5555\n")
    assert resolve_nats_url({"QMESH_DATA": str(tmp_path)}) == "nats://127.0.0.1:5555"


def test_nats_url_default(tmp_path: Path) -> None:
    assert resolve_nats_url({"QMESH_DATA": str(tmp_path / "none")}) == DEFAULT_NATS_URL
    assert DEFAULT_NATS_URL == "nats://127.0.0.1:4222"
