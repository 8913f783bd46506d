"""CTL-07: controls change without a restart, atomically, and a bad change keeps the old ones.

These tests poll with a short interval, so they wait briefly for the watcher's own timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from qmesh.control import ControlError, Controls, ControlWatcher

INTERVAL = 0.05


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(3.0):
        while not condition():  # noqa: ASYNC110 - the watcher under test polls; so do we
            await asyncio.sleep(0.01)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Controls] = []

    async def __call__(self, controls: Controls) -> None:
        self.seen.append(controls)


@pytest.fixture
async def watched(control_dir: Path) -> AsyncIterator[tuple[ControlWatcher, Recorder]]:
    (control_dir / "me").write_text("mx.example.test\n")
    (control_dir / "databytes").write_text("1000\n")
    recorder = Recorder()
    watcher = ControlWatcher(control_dir, {}, recorder, interval=INTERVAL)
    await watcher.start()
    yield watcher, recorder
    await watcher.stop()


async def test_ctl07_change_is_picked_up_within_the_interval(
    control_dir: Path, watched: tuple[ControlWatcher, Recorder]
) -> None:
    watcher, recorder = watched
    assert watcher.current.databytes == 1000
    (control_dir / "databytes").write_text("250000\n")
    await until(lambda: bool(recorder.seen))
    assert watcher.current.databytes == 250000
    assert recorder.seen == [watcher.current]


async def test_ctl07_new_file_and_removed_file(
    control_dir: Path, watched: tuple[ControlWatcher, Recorder]
) -> None:
    watcher, recorder = watched
    (control_dir / "rcpthosts").write_text("example.test\n")
    await until(lambda: watcher.current.rcpthosts is not None)
    (control_dir / "rcpthosts").unlink()
    await until(lambda: watcher.current.rcpthosts is None)
    assert len(recorder.seen) == 2


async def test_ctl07_bad_change_keeps_old_values_and_names_the_file(
    control_dir: Path,
    watched: tuple[ControlWatcher, Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher, recorder = watched
    caplog.set_level(logging.INFO, logger="qmesh.control.watch")
    (control_dir / "bounceformat").write_text("html\n")
    (control_dir / "databytes").write_text("99999\n")
    await until(lambda: any(r.getMessage() == "control.reload_failed" for r in caplog.records))
    failed = next(r for r in caplog.records if r.getMessage() == "control.reload_failed")
    assert getattr(failed, "control") == "bounceformat"  # noqa: B009 - a logging extra
    assert "control/bounceformat line 1" in getattr(failed, "error")  # noqa: B009
    assert watcher.current.databytes == 1000  # the whole old version stays
    assert recorder.seen == []
    (control_dir / "bounceformat").write_text("qsbmf\n")
    await until(lambda: bool(recorder.seen))
    assert (watcher.current.bounceformat, watcher.current.databytes) == ("qsbmf", 99999)
    assert any(r.getMessage() == "control.reloaded" for r in caplog.records)


async def test_reload_now_reads_without_waiting_for_the_poll(control_dir: Path) -> None:
    (control_dir / "me").write_text("mx.example.test\n")
    recorder = Recorder()
    watcher = ControlWatcher(control_dir, {}, recorder, interval=3600)
    await watcher.start()
    try:
        (control_dir / "concurrencyremote").write_text("5\n")
        assert await watcher.reload_now() is True
        assert watcher.current.concurrencyremote == 5
        (control_dir / "concurrencyremote").write_text("7\n")
        watcher.request_reload()  # what a SIGHUP handler calls
        await until(lambda: watcher.current.concurrencyremote == 7)
        (control_dir / "rcptcheck").write_text("perhaps\n")
        assert await watcher.reload_now() is False
        assert watcher.current.rcptcheck is True
    finally:
        await watcher.stop()
    assert [c.concurrencyremote for c in recorder.seen] == [5, 7]


async def test_unchanged_values_do_not_call_on_change(control_dir: Path) -> None:
    (control_dir / "me").write_text("mx.example.test\n")
    calls: list[Controls] = []
    watcher = ControlWatcher(control_dir, {}, calls.append, interval=3600)
    (control_dir / "locals").write_text("mx.example.test\n")  # the value locals had by default
    assert await watcher.reload_now() is True
    assert calls == []


async def test_failing_on_change_is_logged_and_polling_goes_on(
    control_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: Controls) -> None:
        raise RuntimeError("apply failed")

    watcher = ControlWatcher(control_dir, {}, broken, interval=INTERVAL)
    await watcher.start()
    try:
        (control_dir / "maxrcpt").write_text("50\n")
        await until(lambda: watcher.current.maxrcpt == 50)
        await until(lambda: any(r.getMessage() == "control.apply_failed" for r in caplog.records))
        (control_dir / "maxrcpt").write_text("500\n")
        await until(lambda: watcher.current.maxrcpt == 500)
    finally:
        await watcher.stop()


async def test_configmap_swap_is_seen_as_one_change(control_dir: Path) -> None:
    """kubelet writes a new ``..<timestamp>`` directory and renames ``..data`` onto it."""

    def version(tag: str, me: str, databytes: str) -> str:
        d = control_dir / f"..{tag}"
        d.mkdir()
        (d / "me").write_text(me)
        (d / "databytes").write_text(databytes)
        return d.name

    (control_dir / "..data").symlink_to(version("v1", "one.test\n", "100\n"))
    for name in ("me", "databytes"):
        (control_dir / name).symlink_to(f"..data/{name}")
    recorder = Recorder()
    watcher = ControlWatcher(control_dir, {}, recorder, interval=INTERVAL)
    await watcher.start()
    try:
        assert (watcher.current.me, watcher.current.databytes) == ("one.test", 100)
        (control_dir / "..data_tmp").symlink_to(version("v2", "two.test\n", "200\n"))
        (control_dir / "..data_tmp").rename(control_dir / "..data")
        await until(lambda: bool(recorder.seen))
    finally:
        await watcher.stop()
    assert [(c.me, c.databytes) for c in recorder.seen] == [("two.test", 200)]


def test_a_bad_directory_stops_startup(control_dir: Path) -> None:
    (control_dir / "programdelivery").write_text("yes\n")
    with pytest.raises(ControlError, match="control/programdelivery"):
        ControlWatcher(control_dir, {}, lambda _: None)
