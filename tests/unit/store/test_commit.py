"""The group commit of directory-store writes (throughput #10): one directory fsync for all
the writes of a turn in that directory, after them, and each write told its own outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from qmesh.store.commit import GroupCommit


async def test_writes_of_one_turn_share_each_directorys_fsync_after_their_steps() -> None:
    events: list[str] = []

    def sync(directory: Path) -> None:
        events.append(f"sync {directory}")

    commits = GroupCommit(sync)

    def step(name: str, directory: str) -> tuple[Path, str]:
        events.append(f"link {name}")
        return Path(directory), name

    values = await asyncio.gather(
        commits.commit(lambda: step("a", "/d1")),
        commits.commit(lambda: step("b", "/d2")),
        commits.commit(lambda: step("c", "/d1")),
    )
    assert list(values) == ["a", "b", "c"]
    assert events == ["link a", "link b", "link c", "sync /d1", "sync /d2"]
    events.clear()
    assert await commits.commit(lambda: step("d", "/d1")) == "d"  # a later turn syncs again
    assert events == ["link d", "sync /d1"]


async def test_a_failed_step_or_directory_fsync_fails_only_its_own_writes() -> None:
    def sync(directory: Path) -> None:
        if directory == Path("/broken"):
            raise OSError(5, "Input/output error")

    commits = GroupCommit(sync)

    def refused() -> tuple[Path, str]:
        raise FileExistsError("taken")

    outcomes = await asyncio.gather(
        commits.commit(lambda: (Path("/ok"), "kept")),
        commits.commit(refused),
        commits.commit(lambda: (Path("/broken"), "lost")),
        return_exceptions=True,
    )
    assert outcomes[0] == "kept"
    assert isinstance(outcomes[1], FileExistsError)
    assert isinstance(outcomes[2], OSError) and outcomes[2].errno == 5


async def test_a_cancelled_caller_does_not_stop_the_commit() -> None:
    synced: list[Path] = []
    commits = GroupCommit(synced.append)
    made: list[str] = []

    def step() -> tuple[Path, None]:
        made.append("x")
        return Path("/d"), None

    waiting = asyncio.ensure_future(commits.commit(step))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert made == ["x"] and synced == [Path("/d")]
