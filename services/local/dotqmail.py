"""Rule text in ``.qmail`` format → instructions (LOCAL-15, LOCAL-16, LOCAL-57, LOCAL-61).

Pure. Each line becomes at most one instruction carrying its 0-based line number, which is
the instruction index of ARCH-11. A line that can never be carried out (a folder outside the
account, a file line after ``+list`` ...) becomes :class:`Broken` at its place, because lines
run top to bottom and the ones before it still happen (LOCAL-17). Folder names and forward
syntax are the directory's own checks (:mod:`qmesh.directory.rules`), so delivery and the
CLI agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmesh.directory.rules import FolderError, forward_problem, maildir_folder, mbox_name

BLANK_FIRST_LINE = "Uh-oh: first line of .qmail file is blank. (#4.2.1)"
FORWARD_ONLY_FILE = "Uh-oh: .qmail has file delivery but is forward-only. (#4.7.0)"
FORWARD_ONLY_PROG = "Uh-oh: .qmail has prog delivery but is forward-only. (#4.7.0)"


@dataclass(frozen=True, slots=True)
class Maildir:
    """Deliver into a folder of the account (LOCAL-24, LOCAL-61)."""

    index: int
    path: str
    folder: str


@dataclass(frozen=True, slots=True)
class Mbox:
    """An mbox line (LOCAL-25): the object ``.mbox/<name>`` of the account (LOCAL-61)."""

    index: int
    path: str
    name: str


@dataclass(frozen=True, slots=True)
class Program:
    """``|command`` (LOCAL-18)."""

    index: int
    command: str


@dataclass(frozen=True, slots=True)
class Forward:
    """``&address`` or a bare address (LOCAL-16, LOCAL-23)."""

    index: int
    address: str


@dataclass(frozen=True, slots=True)
class Broken:
    """A line that fails when reached: ``Z`` with ``text``."""

    index: int
    text: str


Instruction = Maildir | Mbox | Program | Forward | Broken


def no_mailbox(path: str) -> str:
    return f"Unable to open {path}: domain rules have no mailbox. (#4.2.1)"


def bad_forward(address: str) -> str:
    return f"Uh-oh: .qmail has an invalid forward address: {address}. (#4.2.1)"


def lines(text: str) -> list[str]:
    """Split at LF (a missing final LF is tolerated), trailing spaces and tabs removed."""
    body = text[:-1] if text.endswith("\n") else text
    return [line.rstrip(" \t") for line in body.split("\n")]


def parse_rule(text: str, *, mailbox: bool = True) -> tuple[Instruction, ...]:
    """The instructions of one rule, in order; comments and ``+`` lines leave none.

    ``mailbox`` is False for domain rules, which have no mailbox (LOCAL-57).
    """
    out: list[Instruction] = []
    forward_only = False
    for index, line in enumerate(lines(text)):
        first = line[:1]
        if first == "":
            if index == 0:
                out.append(Broken(index, BLANK_FIRST_LINE))
                break
            continue
        if first == "#":
            continue
        if first == "+":
            forward_only = forward_only or line == "+list"
            continue
        if first in (".", "/"):
            out.append(_file_line(index, line, forward_only=forward_only, mailbox=mailbox))
        elif first == "|":
            if forward_only:
                out.append(Broken(index, FORWARD_ONLY_PROG))
            else:
                out.append(Program(index, line[1:]))
        else:
            address = line[1:] if first == "&" else line
            bare_ok = first == "&" or (first.isascii() and first.isalnum())
            if bare_ok and forward_problem(address) is None:
                out.append(Forward(index, address))
            else:
                out.append(Broken(index, bad_forward(address)))
    return tuple(out)


def _file_line(index: int, path: str, *, forward_only: bool, mailbox: bool) -> Instruction:
    if forward_only:
        return Broken(index, FORWARD_ONLY_FILE)
    if not mailbox:
        return Broken(index, no_mailbox(path))
    try:
        if path.endswith("/"):
            return Maildir(index, path, maildir_folder(path))
        return Mbox(index, path, mbox_name(path))
    except FolderError as err:
        return Broken(index, str(err))
