"""One folder's index: UIDVALIDITY, UIDs, flags and MODSEQ, as pure state transitions (#13).

The index is Dovecot's ``dovecot-uidlist`` plus its flag and modseq records, kept as one value
in the KV bucket ``qmesh_mailbox``. Every change is a function ``index -> index`` applied by
:mod:`qmesh.mailbox.sync` as one compare-and-set on the value's revision, so two replicas that
look at once both end with the same UIDs: the loser of the race re-reads and applies its
change again (the shape of ``services/send/plan.py``).

UIDs are given when a reader first sees a message (:func:`reconcile`), not by ``local``: the
delivery path stays one object write. New objects are numbered in the order of their delivery
time, then unique name, so the same listing always gives the same UIDs. A UID is never given
twice in one UIDVALIDITY; MODSEQ grows by one for every change (RFC 7162).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from qmesh.mailbox import vanished
from qmesh.mailbox.flags import from_info

FORMAT = 1
FlagMode = Literal["add", "remove", "replace"]


@dataclass(frozen=True, slots=True)
class Listed:
    """One message object as a store listing shows it, relative to its folder."""

    unique: str  # the Maildir unique name, also the POP3 UIDL
    key: str  # "new/<unique>" or "cur/<unique>:2,<info>"
    size: int  # RFC822.SIZE: the message with CRLF line ends (the name's ",W=")
    when: int  # internal date, Unix seconds
    info: str = ""  # the letters after ":2,"


@dataclass(frozen=True, slots=True)
class Entry:
    uid: int
    modseq: int
    flags: frozenset[str]
    size: int
    when: int
    key: str


@dataclass(frozen=True, slots=True)
class FolderIndex:
    uidvalidity: int
    next_uid: int = 1
    highest_modseq: int = 1
    first_recent: int = 1  # UIDs from here on are \Recent for the next session to claim them
    messages: Mapping[str, Entry] | None = None  # unique -> entry, in UID order
    # QRESYNC (qmesh.mailbox.vanished): expunged UID runs and the MODSEQ they reach back to
    gone: tuple[vanished.Run, ...] = ()
    gone_floor: int = 0

    @property
    def entries(self) -> Mapping[str, Entry]:
        return self.messages or {}

    def by_uid(self) -> dict[int, tuple[str, Entry]]:
        return {e.uid: (u, e) for u, e in self.entries.items()}


def new_index(uidvalidity: int) -> FolderIndex:
    return FolderIndex(uidvalidity=uidvalidity, messages={})


def reconcile(index: FolderIndex, listing: Iterable[Listed]) -> FolderIndex:
    """The index after looking at the folder's objects: new ones numbered, vanished ones gone.

    One unique name under both ``new/`` and ``cur/`` (an interrupted move) is one message, at
    its ``cur/`` key. An entry whose object moved (pop3d's ``new/`` to ``cur/``) keeps its UID
    and flags and changes only its key.
    """
    seen: dict[str, Listed] = {}
    for item in listing:
        had = seen.get(item.unique)
        if had is None or (had.key.startswith("new/") and item.key.startswith("cur/")):
            seen[item.unique] = item
    old = index.entries
    modseq = index.highest_modseq
    changed = False
    kept: dict[str, Entry] = {}
    for unique, entry in old.items():
        found = seen.get(unique)
        if found is None:
            changed = True
            continue
        if found.key != entry.key:
            entry = replace(entry, key=found.key)
            changed = True
        kept[unique] = entry
    fresh = sorted((i for u, i in seen.items() if u not in old), key=lambda i: (i.when, i.unique))
    next_uid = index.next_uid
    if fresh or len(kept) != len(old):
        modseq += 1
    for item in fresh:
        kept[item.unique] = Entry(
            next_uid, modseq, from_info(item.info), item.size, item.when, item.key
        )
        next_uid += 1
        changed = True
    if not changed:
        return index
    new = replace(index, next_uid=next_uid, highest_modseq=modseq, messages=kept)
    return _noted(new, (e.uid for u, e in old.items() if u not in kept))


def add(index: FolderIndex, item: Listed, flags: frozenset[str]) -> tuple[FolderIndex, int]:
    """An object this reader wrote itself (APPEND, COPY, MOVE): its UID, given now."""
    if item.unique in index.entries:
        return index, index.entries[item.unique].uid
    modseq = index.highest_modseq + 1
    uid = index.next_uid
    messages = dict(index.entries)
    messages[item.unique] = Entry(uid, modseq, flags, item.size, item.when, item.key)
    return replace(index, next_uid=uid + 1, highest_modseq=modseq, messages=messages), uid


def apply_flags(old: frozenset[str], flags: frozenset[str], mode: FlagMode) -> frozenset[str]:
    if mode == "add":
        return old | flags
    if mode == "remove":
        return old - flags
    return flags


def set_flags(
    index: FolderIndex,
    uids: Iterable[int],
    flags: frozenset[str],
    mode: FlagMode,
    *,
    unchanged_since: int | None = None,
) -> FolderIndex:
    """STORE: every listed UID that still exists; only messages whose flags change get a new
    MODSEQ. With ``unchanged_since`` (CONDSTORE), a message modified later is left alone."""
    wanted = set(uids)
    modseq = index.highest_modseq + 1
    messages = dict(index.entries)
    changed = False
    for unique, entry in index.entries.items():
        if entry.uid not in wanted:
            continue
        if unchanged_since is not None and entry.modseq > unchanged_since:
            continue
        new = apply_flags(entry.flags, flags, mode)
        if new != entry.flags:
            messages[unique] = replace(entry, flags=new, modseq=modseq)
            changed = True
    if not changed:
        return index
    return replace(index, highest_modseq=modseq, messages=messages)


def remove(index: FolderIndex, uniques: Iterable[str]) -> FolderIndex:
    """EXPUNGE, MOVE's second half, or a POP3 DELE: the entries are gone for every reader."""
    gone = set(uniques) & set(index.entries)
    if not gone:
        return index
    messages = {u: e for u, e in index.entries.items() if u not in gone}
    new = replace(index, highest_modseq=index.highest_modseq + 1, messages=messages)
    return _noted(new, (index.entries[u].uid for u in gone))


def _noted(index: FolderIndex, uids: Iterable[int]) -> FolderIndex:
    """``index`` remembering ``uids`` as expunged at its current MODSEQ (QRESYNC)."""
    runs, floor = vanished.note(index.gone, index.gone_floor, uids, index.highest_modseq)
    if runs is index.gone:
        return index
    return replace(index, gone=runs, gone_floor=floor)


def claim_recent(index: FolderIndex) -> tuple[FolderIndex, range]:
    """The first session to select the folder takes the \\Recent UIDs (RFC 3501 2.3.2)."""
    claimed = range(index.first_recent, index.next_uid)
    if not claimed:
        return index, claimed
    return replace(index, first_recent=index.next_uid), claimed


def encode(index: FolderIndex) -> bytes:
    """Compact JSON, deflated: a 10,000-message folder is a few hundred kilobytes at most."""
    head = json.dumps(
        {
            "v": FORMAT,
            "uv": index.uidvalidity,
            "next": index.next_uid,
            "hms": index.highest_modseq,
            "recent": index.first_recent,
        },
        separators=(",", ":"),
    )
    tail = json.dumps(
        {"gone": [list(r) for r in index.gone], "gfl": index.gone_floor}, separators=(",", ":")
    )
    rows = ",".join([_row(u, e) for u, e in index.entries.items()])
    text = f'{head[:-1]},"m":[{rows}],{tail[1:]}'
    # level 1: every change of a large folder is encoded again; 6 saves little more and
    # costs three times as long
    return zlib.compress(text.encode(), 1)


# The JSON of each entry, kept by the entry's identity: entries are immutable and shared by
# every revision that did not change them, so a large folder's next revision encodes only the
# entries that changed (a \Recent claim or a STORE of a few messages re-encodes none or few).
_ROWS: dict[int, tuple[str, Entry, str]] = {}
ROWS_KEPT = 200_000  # about 60 MB at most, for a replica of many large folders


def _row(unique: str, entry: Entry) -> str:
    found = _ROWS.get(id(entry))
    if found is not None and found[1] is entry and found[0] == unique:
        return found[2]
    text = json.dumps(
        [unique, entry.uid, entry.modseq, sorted(entry.flags), entry.size, entry.when, entry.key],
        separators=(",", ":"),
    )
    if len(_ROWS) >= ROWS_KEPT:
        _ROWS.clear()
    _ROWS[id(entry)] = (unique, entry, text)
    return text


class BadIndex(ValueError):
    """A stored value that is not an index this code can read."""


def decode(raw: bytes) -> FolderIndex:
    try:
        doc = json.loads(zlib.decompress(raw))
        if doc["v"] != FORMAT:
            raise BadIndex(f"index format {doc['v']!r}")
        rows: Sequence[list[object]] = doc["m"]
        messages = {
            str(u): Entry(int(uid), int(ms), frozenset(map(str, fl)), int(sz), int(wh), str(k))  # type: ignore[call-overload]
            for u, uid, ms, fl, sz, wh, k in rows
        }
        highest = int(doc["hms"])
        # A value written without the record (older code) knows nothing before its MODSEQ.
        gone = vanished.to_runs(doc.get("gone"))
        return FolderIndex(
            uidvalidity=int(doc["uv"]),
            next_uid=int(doc["next"]),
            highest_modseq=highest,
            first_recent=int(doc["recent"]),
            messages=messages,
            gone=gone or (),
            gone_floor=int(doc["gfl"]) if gone is not None and "gfl" in doc else highest,
        )
    except (ValueError, KeyError, TypeError, zlib.error) as err:
        raise BadIndex(str(err)) from err
