"""SEARCHRES (RFC 5182, part of RFC 9051 6.4.4.1): ``SEARCH RETURN (SAVE)`` and ``$`` (#13).

``$`` is a whole sequence set of its own (``$,1`` and ``$:3`` are ``BAD``, as in Dovecot).
pymap 0.36.7 parses sequence sets in one place, :meth:`SequenceSet.parse`; :func:`install`
teaches it ``$``, which parses to a :class:`SavedSet`. The connection state binds every
:class:`SavedSet` of a command to the UIDs it saved (:func:`bind`) before the command runs,
so FETCH, STORE, COPY, MOVE, EXPUNGE and SEARCH of pymap and of the other modules here see
an ordinary UID set. The saved UIDs stay what they were found to be: a message expunged
since is left out because it is no longer in the folder, as RFC 5182 2.1 asks.

What is saved (RFC 5182 2.1): every message found, or only the lowest and/or highest when
``SAVE`` comes with ``MIN`` and/or ``MAX`` and neither ``ALL`` nor ``COUNT``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from pymap.parsing import Params, Space
from pymap.parsing.command import Command
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.specials import SearchKey, SequenceSet

SAVE = b"SAVE"
_DOLLAR = 0x24
_ENDS = b" )\r\n"  # what may follow a sequence set


class SavedSet(SequenceSet):
    """``$``: the messages the last ``SEARCH RETURN (SAVE)`` found, by UID."""

    def __init__(self) -> None:
        super().__init__([], uid=True)  # looked up by UID in FETCH and UID FETCH alike

    def bind(self, uids: Iterable[int]) -> None:
        found = sorted(set(uids))
        self.sequences = SequenceSet.build(found).sequences if found else []
        self._raw = None

    @property
    def is_all(self) -> bool:
        return False

    def __bytes__(self) -> bytes:
        return b"$"

    def __repr__(self) -> str:
        return f"<SavedSet {self.sequences!r}>"


_parse = SequenceSet.parse.__func__  # type: ignore[attr-defined]


def _parse_saved(cls: type[SequenceSet], buf: memoryview, params: Params) -> Any:
    probe = buf
    with contextlib.suppress(NotParseable):
        _, probe = Space.parse(buf, params)
    if bytes(probe[:1]) == b"$":
        if probe[1:2] and probe[1] not in _ENDS:
            raise NotParseable(probe)  # ``$`` stands alone (RFC 5182 3: seq-last-command)
        return SavedSet(), probe[1:]
    return _parse(cls, buf, params)


def install() -> None:
    SequenceSet.parse = classmethod(_parse_saved)  # type: ignore[method-assign, assignment]


def _in_keys(keys: Iterable[SearchKey]) -> Iterator[SavedSet]:
    for key in keys:
        if isinstance(key.filter, SavedSet):
            yield key.filter
        elif key.value == b"KEYSET":
            yield from _in_keys(key.filter_key_set)
        elif key.value == b"OR":
            yield from _in_keys(key.filter_key_or)


def saved_sets(cmd: Command) -> list[SavedSet]:
    """Every ``$`` of a command: its message set, its UID EXPUNGE set, its SEARCH keys."""
    found = [
        value
        for value in (getattr(cmd, "sequence_set", None), getattr(cmd, "uid_set", None))
        if isinstance(value, SavedSet)
    ]
    keys = getattr(cmd, "keys", None)
    if isinstance(keys, frozenset | list | tuple):
        found += _in_keys(k for k in keys if isinstance(k, SearchKey))
    return found


def bind(cmd: Command, uids: frozenset[int]) -> None:
    for saved in saved_sets(cmd):
        saved.bind(uids)


def to_save(uids: list[int], returns: frozenset[bytes]) -> frozenset[int]:
    """The UIDs ``SAVE`` keeps of those a SEARCH found (RFC 5182 2.1)."""
    if not uids or returns & {b"ALL", b"COUNT"} or not returns & {b"MIN", b"MAX"}:
        return frozenset(uids)
    kept = set()
    if b"MIN" in returns:
        kept.add(min(uids))
    if b"MAX" in returns:
        kept.add(max(uids))
    return frozenset(kept)


install()
