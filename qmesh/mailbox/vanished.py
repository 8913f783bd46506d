"""The UIDs a folder lost, with the MODSEQ at which each went: QRESYNC's memory (#13, RFC 7162
3.2.5, 3.2.6).

A client that comes back with ``SELECT ... (QRESYNC (uidvalidity modseq ...))`` or
``UID FETCH ... (CHANGEDSINCE modseq VANISHED)`` is told which of its UIDs were expunged after
``modseq``. The folder index keeps that record beside its messages, in the same value, so an
expunge and its record are one compare-and-set: runs ``(first UID, last UID, MODSEQ)``, oldest
first, at most :data:`MAX_RUNS` of them. An expunge of many messages at once (one MODSEQ,
consecutive UIDs) is one run. When old runs are dropped, ``floor`` rises to the highest MODSEQ
dropped: a question about changes at or before ``floor`` has no exact answer, and the reader
falls back to "every UID the client may know that is not here now" (what RFC 7162 3.2.5.2
allows a server without the history).

Pure functions over tuples; :mod:`qmesh.mailbox.index` calls :func:`note` from the two
transitions that drop entries (``reconcile`` and ``remove``).
"""

from __future__ import annotations

from collections.abc import Iterable

Run = tuple[int, int, int]  # first UID, last UID, MODSEQ of the expunge
MAX_RUNS = 2000  # about 30 KB of JSON before deflate; a folder's index stays far below 1 MB


def note(
    runs: tuple[Run, ...], floor: int, uids: Iterable[int], modseq: int
) -> tuple[tuple[Run, ...], int]:
    """``runs`` with ``uids`` expunged at ``modseq`` added, and the new floor."""
    added: list[Run] = []
    for uid in sorted(set(uids)):
        if added and added[-1][1] + 1 == uid:
            added[-1] = (added[-1][0], uid, modseq)
        else:
            added.append((uid, uid, modseq))
    if not added:
        return runs, floor
    out = runs + tuple(added)
    if len(out) > MAX_RUNS:
        dropped, out = out[: len(out) - MAX_RUNS], out[len(out) - MAX_RUNS :]
        floor = max(floor, *(r[2] for r in dropped))
    return out, floor


def since(runs: tuple[Run, ...], floor: int, modseq: int) -> list[tuple[int, int]] | None:
    """The UID ranges expunged after ``modseq``, merged and sorted; ``None`` when the record
    does not reach back that far (``modseq`` below ``floor``)."""
    if modseq < floor:
        return None
    found = sorted((first, last) for first, last, ms in runs if ms > modseq)
    return merge(found)


def merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with overlapping or touching ones joined."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def absent(present: Iterable[int], below: int) -> list[tuple[int, int]]:
    """The UID ranges in ``1 .. below-1`` that ``present`` lacks: every UID a client could
    still hold that this folder no longer has."""
    out: list[tuple[int, int]] = []
    nxt = 1
    for uid in sorted(set(present)):
        if uid >= below:
            break
        if uid > nxt:
            out.append((nxt, uid - 1))
        nxt = uid + 1
    if nxt < below:
        out.append((nxt, below - 1))
    return out


def intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Two sorted, merged range lists: the ranges both cover (linear, never expanded)."""
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def to_runs(raw: object) -> tuple[Run, ...] | None:
    """The stored ``[[first, last, modseq], ...]``; ``None`` if it is not that."""
    if not isinstance(raw, list):
        return None
    runs: list[Run] = []
    for row in raw:
        if not (isinstance(row, list) and len(row) == 3 and all(isinstance(x, int) for x in row)):
            return None
        runs.append((row[0], row[1], row[2]))
    return tuple(runs)
