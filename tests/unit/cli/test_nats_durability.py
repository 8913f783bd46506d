"""Reading a NATS server's ``/varz`` for whether JetStream writes are on disk before they are
acknowledged (throughput #10: a 250 promises the message survives a crash of the machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qmesh.cli.natsd import SYNC_ALWAYS, durability_problem, server_config


def _varz(config: Any) -> dict[str, Any]:
    return {"server_id": "N1", "jetstream": {"config": config}}


def test_sync_always_is_no_problem() -> None:
    varz = _varz({"store_dir": "/d", "sync_interval": 120_000_000_000, "sync_always": True})
    assert durability_problem(varz) is None


def test_the_default_two_minute_sync_is_named_with_the_fix() -> None:
    problem = durability_problem(_varz({"sync_interval": 120_000_000_000}))
    assert problem is not None
    assert "every 120 s" in problem
    assert "sync_interval: always" in problem


@pytest.mark.parametrize(
    "varz",
    [
        {},
        {"jetstream": None},
        {"jetstream": "enabled"},
        {"jetstream": {}},
        {"jetstream": {"config": ["sync_always", True]}},
        _varz({"sync_always": "true"}),  # only the JSON true counts
        _varz({"sync_always": 1}),
        _varz({"sync_interval": "2m"}),
        _varz({"sync_interval": None, "sync_always": None}),
    ],
)
def test_anything_else_is_a_problem_and_never_an_error(varz: dict[str, Any]) -> None:
    problem = durability_problem(varz)
    assert problem is not None
    assert problem


def test_the_server_config_sets_sync_and_includes_the_users(tmp_path: Path) -> None:
    users = tmp_path / "qmesh-up.conf"
    users.write_text("{}\n")
    path = server_config(tmp_path, users, sync_always=True)
    assert path is not None and path != users
    text = path.read_text()
    assert SYNC_ALWAYS in text
    assert 'include "qmesh-up.conf"' in text  # relative: NATS joins it to the file's directory


def test_without_sync_the_users_file_is_used_as_it_is(tmp_path: Path) -> None:
    users = tmp_path / "users.conf"
    assert server_config(tmp_path, users, sync_always=False) == users
    assert server_config(tmp_path, None, sync_always=False) is None
