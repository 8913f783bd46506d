"""Reading a control directory as one consistent snapshot (CTL-07: never a half-read file).

A Kubernetes ConfigMap volume holds each version in a timestamped directory and swaps the
``..data`` symlink to a new one atomically; the visible names are symlinks through ``..data``.
Reading every file through the resolved ``..data`` gives one version, and a fingerprint taken
before and after a read tells whether anything moved underneath it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from qmesh.control.parse import ControlError

DATA_LINK = "..data"

Stamp = tuple[int, ...]
Fingerprint = tuple[tuple[str, Stamp | str], ...]


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError as err:
        return (-1, err.errno or 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)


def fingerprint(control_dir: Path, extra: Iterable[Path] = ()) -> Fingerprint:
    """Names, mtimes, sizes and inodes of the directory's entries, plus the ``..data`` target.

    ``extra`` adds files outside the directory that a control names (``tlscert`` pointing
    at a mounted Secret), so their rotation counts as a change too.
    """
    items: list[tuple[str, Stamp | str]] = [("", _stamp(control_dir))]
    try:
        names = sorted(os.listdir(control_dir))
    except OSError as err:
        return (("", (-1, err.errno or 0)),)
    items.extend((name, _stamp(control_dir / name)) for name in names)
    with contextlib.suppress(OSError):
        items.append((DATA_LINK + " ->", os.readlink(control_dir / DATA_LINK)))
    items.extend((str(path), _stamp(path)) for path in extra)
    return tuple(items)


def snapshot_dir(control_dir: Path) -> Path:
    """The directory to read: the target of ``..data`` when it is a symlink, else the directory."""
    link = control_dir / DATA_LINK
    if link.is_symlink():
        return link.resolve()
    return control_dir


def read_control(directory: Path, name: str) -> str | None:
    """The text of control ``name``; ``None`` when it does not exist (CTL-02).

    A control that exists but cannot be read is a :class:`ControlError`, never "missing"
    (CTL-06): permissions, a directory or a device in its place, bytes that are not UTF-8.
    """
    path = directory / name
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ControlError(name, f"cannot be read: {err.strerror}") from err
    if stat.S_ISDIR(st.st_mode):
        raise ControlError(name, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ControlError(name, "is not a regular file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ControlError(name, f"cannot be read: {err.strerror}") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ControlError(name, "is not valid UTF-8", line) from err
