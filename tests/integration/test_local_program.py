"""Program delivery in a real ``sh`` subprocess (LOCAL-18, LOCAL-19)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from services.local.program import Limits, Outcome, run_program

pytestmark = pytest.mark.integration

MESSAGE = b"Subject: hello\n\nbody line\n"
ENV = {"SENDER": "a@y.test", "RECIPIENT": "bob@x.test", "USER": "bob"}


async def run(command: str, tmp_path: Path, limits: Limits | None = None) -> Outcome:
    return await run_program(
        command, MESSAGE, ENV, limits=limits or Limits(), scratch_root=tmp_path
    )


@pytest.mark.parametrize(
    ("command", "result", "status"),
    [
        ("exit 0", "ok", 0),
        ("exit 99", "stop", 99),
        ("exit 100", "permanent", 100),
        ("exit 111", "temporary", 111),
        ("exit 1", "temporary", 1),
        ("exit 77", "permanent", 77),
    ],
)
async def test_exit_codes(command: str, result: str, status: int, tmp_path: Path) -> None:
    """LOCAL-18: 0 ok, 99 stop, 100/64/65/70/76/77/78/112 permanent, the rest temporary."""
    ran = await run(command, tmp_path)
    assert (ran.result, ran.status) == (result, status)


async def test_stdin_is_the_message_and_output_is_the_report(tmp_path: Path) -> None:
    ran = await run("cat; echo to-stderr >&2", tmp_path)
    assert ran.result == "ok"
    assert ran.output == MESSAGE.decode() + "to-stderr\n"


async def test_environment_is_only_what_local_19_gives(tmp_path: Path) -> None:
    """LOCAL-18/19: no inherited environment (no credentials); HOME is the scratch dir."""
    os.environ["QMESH_S3_SECRET_KEY"] = "must-not-leak"
    try:
        ran = await run("env | sort; pwd", tmp_path)
    finally:
        del os.environ["QMESH_S3_SECRET_KEY"]
    lines = ran.output.splitlines()
    names = {line.split("=", 1)[0] for line in lines if "=" in line}
    assert "QMESH_S3_SECRET_KEY" not in names
    assert {"SENDER", "RECIPIENT", "USER", "HOME"} <= names
    home = next(line.split("=", 1)[1] for line in lines if line.startswith("HOME="))
    assert lines[-1] == home
    assert Path(home).parent == tmp_path


async def test_scratch_directory_is_removed_afterwards(tmp_path: Path) -> None:
    ran = await run("mkdir sub && echo x > sub/file && exit 111", tmp_path)
    assert ran.result == "temporary"
    assert os.listdir(tmp_path) == []


async def test_time_limit_kills_the_program(tmp_path: Path) -> None:
    """LOCAL-18: a program running too long is killed: temporary failure."""
    ran = await run("echo started; sleep 30", tmp_path, Limits(wall_seconds=0.5))
    assert ran.result == "temporary"
    assert ran.timed_out
    assert ran.output == "started\n"


async def test_background_children_do_not_hold_the_delivery(tmp_path: Path) -> None:
    ran = await run("(sleep 30 &) ; exit 0", tmp_path, Limits(wall_seconds=10))
    assert ran.result == "ok"


async def test_death_by_signal_is_temporary(tmp_path: Path) -> None:
    ran = await run("kill -9 $$", tmp_path)
    assert (ran.result, ran.status) == ("temporary", None)


async def test_memory_limit_applies(tmp_path: Path) -> None:
    """LOCAL-18: an address-space limit is set in the child before exec."""
    ran = await run("ulimit -v", tmp_path, Limits(memory_bytes=64 * 1024 * 1024))
    assert ran.output.strip() == str(64 * 1024)


async def test_a_program_that_ignores_its_input_is_fine(tmp_path: Path) -> None:
    big = b"x" * (4 * 1024 * 1024)
    ran = await run_program("exit 0", big, ENV, limits=Limits(), scratch_root=tmp_path)
    assert ran.result == "ok"


async def test_huge_output_is_cut(tmp_path: Path) -> None:
    ran = await run("yes | head -c 1000000", tmp_path)
    assert ran.result == "ok"
    assert len(ran.output) <= 4096


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_cancelled_delivery_kills_the_program(tmp_path: Path) -> None:
    """SIGTERM drains the consumer: a program must not outlive its delivery."""
    pidfile = tmp_path / "pid"
    env = {**ENV, "PIDFILE": str(pidfile)}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    task = asyncio.create_task(
        run_program(
            'echo $$ > "$PIDFILE"; exec sleep 30',
            MESSAGE,
            env,
            limits=Limits(),
            scratch_root=scratch,
        )
    )
    async with asyncio.timeout(5):
        while not pidfile.exists() or not pidfile.read_text().strip():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5):
        while _running(pid):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert os.listdir(scratch) == []
