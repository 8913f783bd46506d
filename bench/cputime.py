"""Server CPU time read from ``/proc``: a process, its live descendants and the children it
has already reaped.

A process tree's CPU is the sum, over the root and every live descendant, of its own time
(``utime + stime``) and its reaped children's time (``cutime + cstime``). A child that exits
during a run moves from "live" into its parent's reaped time, so the sum stays whole; that is
how Postfix's short-lived ``smtpd``/``cleanup``/``virtual`` processes are counted. The part of
it spent in the kernel (``stime``, ``cstime``) is kept apart as well, to tell the interpreter's
work from system calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    own: int  # utime + stime, clock ticks
    reaped: int  # cutime + cstime: children that exited and were waited for
    own_kernel: int = 0  # stime
    reaped_kernel: int = 0  # cstime


def parse_stat(text: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line (``comm`` may hold spaces and parentheses)."""
    head, _, rest = text.rpartition(")")
    pid, _, comm = head.partition(" (")
    fields = rest.split()  # fields[0] is field 3 (state) of proc(5)
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return ProcStat(int(pid), comm, int(fields[1]), utime + stime, cutime + cstime, stime, cstime)


def scan(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process visible now; one that exits while being read is left out."""
    stats: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
    return stats


def tree(stats: Mapping[int, ProcStat], root: int) -> list[int]:
    """``root`` and its live descendants (empty when ``root`` is gone)."""
    if root not in stats:
        return []
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def own_ticks(st: ProcStat, *, kernel: bool = False) -> int:
    return st.own_kernel if kernel else st.own


def tree_ticks(stats: Mapping[int, ProcStat], root: int, *, kernel: bool = False) -> int:
    """CPU ticks of ``root``'s whole tree, exited children included (``kernel``: only the
    time spent in the kernel)."""
    return sum(
        own_ticks(stats[p], kernel=kernel) + (stats[p].reaped_kernel if kernel else stats[p].reaped)
        for p in tree(stats, root)
    )


def snapshot(
    groups: Mapping[str, Iterable[int]],
    own_only: Iterable[int] = (),
    proc: Path = PROC,
    *,
    kernel: bool = False,
) -> dict[str, int]:
    """Ticks per named group of process trees; a pid in ``own_only`` counts only itself
    (a supervisor whose children are groups of their own). ``kernel``: only system time."""
    stats = scan(proc)
    solo = set(own_only)

    def ticks(pid: int) -> int:
        if pid in solo:
            return own_ticks(stats[pid], kernel=kernel) if pid in stats else 0
        return tree_ticks(stats, pid, kernel=kernel)

    return {name: sum(ticks(p) for p in pids) for name, pids in groups.items()}


def ms_per_message(ticks: int, messages: int) -> float:
    return ticks * 1000.0 / TICKS_PER_SECOND / messages
