"""Checking delivery-rule texts before they are stored (LOCAL-16, LOCAL-57, LOCAL-58, LOCAL-61).

The CLI refuses a rule that would certainly fail at delivery: a blank first line, a forward
that is not a complete ``user@fqdn``, a file line outside the account or naming an invalid
folder, a file or program line after ``+list``, and, for domain rules, an empty text or any
file line. :func:`maildir_folder` and :func:`mbox_name` are the LOCAL-61 mapping from a file
line to an object of the account; delivery uses the same functions.
"""

from __future__ import annotations

import re
from typing import Literal

from qmesh.directory.errors import InvalidName, InvalidRule
from qmesh.directory.names import domain_name, is_account_name, rule_file_name

MAX_RULE_BYTES = 64 * 1024
MAX_FORWARD_BYTES = 1000  # ADDR-02
FOLDER_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")
_NOT_IN_FORWARD = frozenset(" \t<>()[]")
POSTMASTER = "postmaster"

FolderProblem = Literal["outside home", "invalid folder name"]


class FolderError(InvalidRule):
    """A file line that names no object of the account (LOCAL-24, LOCAL-61)."""

    def __init__(self, path: str, problem: FolderProblem) -> None:
        super().__init__(f"Unable to open {path}: {problem}. (#4.2.1)")
        self.path = path
        self.problem = problem


def _segments(path: str) -> list[str]:
    if path.startswith("/"):
        raise FolderError(path, "outside home")
    parts = path.split("/")
    if ".." in parts:
        raise FolderError(path, "outside home")
    return [p for p in parts if p not in ("", ".")]


def _folder(path: str, segments: list[str]) -> str:
    names = [s.lstrip(".") for s in segments]
    name = ".".join(names)
    if not names or "" in names or not FOLDER_RE.fullmatch(name) or name.startswith("."):
        raise FolderError(path, "invalid folder name")
    return name


def maildir_folder(path: str) -> str:
    """The folder a Maildir line (ending in ``/``) names: ``INBOX`` or a Maildir++ name.

    ``./Maildir/`` -> ``INBOX``; ``./Maildir/.Lists.qmail/`` -> ``Lists.qmail``;
    ``./Mail/spam/`` -> ``Mail.spam``. Raises :class:`FolderError`.
    """
    segments = _segments(path)
    if segments == ["Maildir"]:
        return "INBOX"
    if segments and segments[0] == "Maildir":
        segments = segments[1:]
    name = _folder(path, segments)
    if name.upper() == "INBOX":
        raise FolderError(path, "invalid folder name")
    return name


def mbox_name(path: str) -> str:
    """The ``.mbox/<name>`` object an mbox line names (LOCAL-61). Raises :class:`FolderError`."""
    return _folder(path, _segments(path))


def forward_problem(address: str) -> str | None:
    """Why ``address`` is not a complete ``user@fqdn`` forward target (LOCAL-16), or None."""
    if not address:
        return "the address is empty"
    if len(address.encode("utf-8", "surrogateescape")) > MAX_FORWARD_BYTES:
        return "the address is longer than 1000 bytes"
    if any(c in _NOT_IN_FORWARD for c in address):
        return "forward addresses take no spaces, brackets or comments"
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain:
        return "it is not a complete user@fqdn address"
    try:
        domain_name(domain)
    except InvalidName as err:
        return str(err)
    return None


def _line_error(rule: str, lineno: int, reason: str) -> InvalidRule:
    return InvalidRule(f"rule {rule_file_name(rule)} line {lineno}: {reason}")


def check_rule_text(name: str, text: str, *, domain_rule: bool) -> str:
    """``text`` unchanged if the rule ``name`` may be stored with it, else :class:`InvalidRule`.

    ``domain_rule`` selects the stricter checks of LOCAL-57 (no mailbox, never empty).
    """
    shown = rule_file_name(name)
    if len(text.encode("utf-8", "surrogateescape")) > MAX_RULE_BYTES:
        raise InvalidRule(f"rule {shown} is longer than {MAX_RULE_BYTES} bytes")
    if "\0" in text or "\r" in text:
        raise InvalidRule(f"rule {shown} contains a NUL or CR (lines end in LF)")
    if text == "":
        if domain_rule:
            raise InvalidRule(
                f"domain rule {shown} is empty: domain rules have no mailbox (LOCAL-57)"
            )
        return text  # the account's default delivery (LOCAL-14)
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    forward_only = False
    delivers = False
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip(" \t")
        if not line:
            if lineno == 1:
                raise _line_error(name, 1, "the first line is blank")
            continue
        first = line[0]
        if first == "#":
            continue
        if first in "./":
            if domain_rule:
                raise _line_error(name, lineno, f"{line}: domain rules have no mailbox")
            if forward_only:
                raise _line_error(name, lineno, "file delivery after +list (forward-only)")
            try:
                if line.endswith("/"):
                    maildir_folder(line)
                else:
                    mbox_name(line)
            except FolderError as err:
                raise _line_error(name, lineno, f"{line}: {err.problem}") from err
        elif first == "|":
            if not line[1:].strip():
                raise _line_error(name, lineno, "program line without a command")
            if forward_only:
                raise _line_error(name, lineno, "program delivery after +list (forward-only)")
            delivers = True
        elif first == "+":
            forward_only = forward_only or line == "+list"
        else:
            address = line[1:] if first == "&" else line
            if first != "&" and not (first.isascii() and first.isalnum()):
                raise _line_error(
                    name, lineno, f"{line!r}: a forward line starts with a letter, digit or '&'"
                )
            problem = forward_problem(address)
            if problem is not None:
                raise _line_error(name, lineno, f"forward to {address!r}: {problem}")
            delivers = True
    if domain_rule and name == POSTMASTER and not delivers:
        raise InvalidRule(f"domain rule {shown} must forward or deliver somewhere (LOCAL-27)")
    return text


def shadowing_accounts(rule: str) -> tuple[str, ...]:
    """Account names that, while one exists, keep domain rule ``rule`` from ever being used.

    An address reaches the domain rules only when no account matches it (LOCAL-03, LOCAL-04;
    qmail's alias user likewise serves ``.qmail-postmaster`` only without a user
    ``postmaster``). These are the account candidates that every address served by the rule
    shares: for ``foo-bar`` the names ``foo-bar`` and ``foo``, for ``foo-default`` (any
    ``foo-…``) the name ``foo``; ``default`` has none (hardening #14).
    """
    if rule == "default":
        return ()
    local = rule.replace(":", ".")  # a stored name is in safeext form (LOCAL-09)
    if rule.endswith("-default"):
        local = local[: -len("-default")]
    ends = [len(local)] + [i for i in range(len(local) - 1, 0, -1) if local[i] == "-"]
    return tuple(
        name for name in dict.fromkeys(local[:end] for end in ends) if is_account_name(name)
    )
