"""LIST-EXTENDED (RFC 5258, as RFC 9051 6.3.9 requires it): what an extended LIST answers (#13).

A LIST is extended when it has selection options ``LIST (...) ref pattern``, return options
``... RETURN (...)`` or a pattern list ``LIST "" ("INBOX" "Sent")`` (at most
:data:`MAX_PATTERNS`). Selection options: ``SUBSCRIBED``, ``REMOTE`` (there are no remote
folders), ``RECURSIVEMATCH`` (never alone, ``BAD`` as in Dovecot) and ``SPECIAL-USE`` (RFC
6154); return options: ``SUBSCRIBED``, ``CHILDREN``, ``SPECIAL-USE`` and ``STATUS (...)``
(LIST-STATUS, RFC 5819). Anything else is ``BAD``. As Dovecot answers it:

- a level that only exists as the parent of a folder (Maildir++ ``a`` of ``a.b``) is
  ``\\NonExistent`` (``\\Noselect`` in a plain LIST);
- ``\\HasChildren``/``\\HasNoChildren`` only with ``RETURN (CHILDREN)``, the special-use
  attributes only with ``SPECIAL-USE`` among the options;
- ``(SUBSCRIBED RECURSIVEMATCH)`` adds ``CHILDINFO ("SUBSCRIBED")`` to a matching name with a
  subscribed descendant the pattern does not match itself, and lists that name even if it is
  neither subscribed nor a folder;
- attributes in Dovecot's order: ``\\Subscribed``, ``\\NonExistent``, the children, the
  special use.

:func:`select` is the pure decision; :class:`~services.imapd.extensions.State` reads the
folder tree and subscriptions and writes the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pymap.parsing import EndLine, Params, Space
from pymap.parsing.command.auth import ListCommand
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.primitives import String
from pymap.parsing.response.specials import ListResponse
from pymap.parsing.specials import Mailbox, StatusAttribute

from qmesh.mailbox.folders import INBOX, SPECIAL_USE, parent_names
from services.imapd.mutf7 import strict_decode

SELECTION = frozenset({b"SPECIAL-USE", b"SUBSCRIBED", b"REMOTE", b"RECURSIVEMATCH"})
RETURNS = frozenset({b"SPECIAL-USE", b"CHILDREN", b"SUBSCRIBED"})
MAX_PATTERNS = 64
SPECIAL_ATTRIBUTES = {name: attr[1:].encode() for name, attr in SPECIAL_USE.items()}
_OPTIONS = re.compile(rb" ?\(([A-Za-z0-9 \-]*)\)")
_PATTERN = re.compile(rb"[\x21\x23-\x27\x2A-\x5B\x5D-\x7A\x7C\x7E]+")
_RETURN = re.compile(rb" RETURN", re.IGNORECASE)
_LIST_STATUS = re.compile(rb"STATUS \(([A-Za-z0-9 \-]{0,200})\)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Node:
    """A name of the folder tree: a folder, or a level above one."""

    name: str
    exists: bool
    has_children: bool


@dataclass(frozen=True, slots=True)
class Listed:
    name: str
    attributes: tuple[bytes, ...]
    childinfo: bool = False

    @property
    def selectable(self) -> bool:
        return b"NonExistent" not in self.attributes


def options(buf: memoryview, allowed: frozenset[bytes]) -> tuple[frozenset[bytes], memoryview]:
    m = _OPTIONS.match(buf)
    if m is None:
        raise NotParseable(buf)
    found = frozenset(o.upper() for o in m.group(1).split())
    if not found <= allowed:
        raise NotParseable(buf)
    return found, buf[m.end() :]


def take_status(buf: memoryview, valid: Iterable[bytes]) -> tuple[tuple[bytes, ...], memoryview]:
    """LIST-STATUS (RFC 5819): the attributes of ``STATUS (...)`` among LIST's return options,
    and the options without it; ``NotParseable`` for an unknown or missing attribute."""
    m = _LIST_STATUS.search(bytes(buf[:400]))
    if m is None:
        return (), buf
    names = tuple(dict.fromkeys(a.upper() for a in m.group(1).split()))
    if not names or not set(names) <= set(valid):
        raise NotParseable(buf)
    rest = bytes(buf[: m.start()]) + bytes(buf[m.end() :])
    return names, memoryview(rest)


def _pattern(buf: memoryview, params: Params) -> tuple[str, memoryview]:
    match = _PATTERN.match(buf)
    if match:
        return strict_decode(match.group(0)), buf[match.end() :]
    raw, buf = String.parse(buf, params)
    return strict_decode(raw.value), buf


def _patterns(buf: memoryview, params: Params) -> tuple[tuple[str, ...], memoryview]:
    """``"pattern"`` or ``("pattern" ...)`` (RFC 5258 ``mbox-or-pat``)."""
    if bytes(buf[:1]) != b"(":
        one, buf = _pattern(buf, params)
        return (one,), buf
    buf = buf[1:]
    found: list[str] = []
    while True:
        if len(found) >= MAX_PATTERNS:
            raise NotParseable(buf)
        one, buf = _pattern(buf, params)
        found.append(one)
        if bytes(buf[:1]) == b")":
            return tuple(found), buf[1:]
        _, buf = Space.parse(buf, params)


class ExtendedListCommand(ListCommand):
    """LIST with RFC 5258's option lists and pattern lists."""

    def __init__(
        self,
        tag: bytes,
        ref_name: str,
        patterns: tuple[str, ...],
        selection: frozenset[bytes] = frozenset(),
        returns: frozenset[bytes] = frozenset(),
        extended: bool = False,
        status: tuple[bytes, ...] = (),
    ) -> None:
        super().__init__(tag, ref_name, patterns[0])
        self.patterns = patterns
        self.selection = selection
        self.returns = returns
        self.extended = extended
        self.status = status  # LIST-STATUS attributes

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[ExtendedListCommand, memoryview]:
        selection: frozenset[bytes] = frozenset()
        extended = bytes(buf[:2]) == b" ("
        if extended:
            selection, buf = options(buf, SELECTION)
            if b"RECURSIVEMATCH" in selection and not selection - {b"RECURSIVEMATCH", b"REMOTE"}:
                raise NotParseable(buf)  # RFC 5258 3: never alone (nor with REMOTE only)
        _, buf = Space.parse(buf, params)
        ref_name, buf = Mailbox.parse(buf, params)
        _, buf = Space.parse(buf, params)
        extended = extended or bytes(buf[:1]) == b"("
        patterns, buf = _patterns(buf, params)
        returns: frozenset[bytes] = frozenset()
        status: tuple[bytes, ...] = ()
        ret = _RETURN.match(buf)
        if ret is not None:
            status, buf = take_status(buf[ret.end() :], StatusAttribute.valid_statuses)
            returns, buf = options(buf, RETURNS)
            extended = True
        _, buf = EndLine.parse(buf, params)
        found = cls(params.tag, ref_name.value, patterns, selection, returns, extended, status)
        return found, buf


def matcher(ref_name: str, patterns: Sequence[str], delimiter: str) -> Callable[[str], bool]:
    """Whether a name matches one of the patterns (``*`` anything, ``%`` within a level;
    ``INBOX`` in any case)."""
    compiled = []
    for pattern in patterns:
        parts = re.split(r"([*%])", ref_name + pattern)
        rx = "".join(
            ".*" if p == "*" else f"[^{re.escape(delimiter)}]*" if p == "%" else re.escape(p)
            for p in parts
        )
        compiled.append((re.compile(rx + r"\Z", re.S), re.compile(rx + r"\Z", re.S | re.I)))

    def matches(name: str) -> bool:
        return any((nocase if name == INBOX else exact).match(name) for exact, nocase in compiled)

    return matches


def select(
    tree: Sequence[Node],
    subscribed: frozenset[str],
    matches: Callable[[str], bool],
    selection: frozenset[bytes],
    returns: frozenset[bytes],
) -> list[Listed]:
    """The answer to an extended LIST, in the tree's order."""
    nodes = {n.name: n for n in tree}
    by_subscription = b"SUBSCRIBED" in selection
    order = [n.name for n in tree] + sorted(subscribed - nodes.keys())
    chosen = {name for name in order if matches(name)}
    if by_subscription:
        chosen &= subscribed
    childinfo: set[str] = set()
    if by_subscription and b"RECURSIVEMATCH" in selection:
        for name in subscribed:
            if not matches(name):
                childinfo.update(p for p in parent_names(name) if matches(p))
    special = b"SPECIAL-USE" in selection | returns
    listed: list[Listed] = []
    for name in order:
        if name not in chosen and name not in childinfo:
            continue
        if b"SPECIAL-USE" in selection and name not in SPECIAL_ATTRIBUTES:
            continue
        node = nodes.get(name, Node(name, exists=False, has_children=False))
        attrs: list[bytes] = []
        if name in subscribed and (by_subscription or b"SUBSCRIBED" in returns):
            attrs.append(b"Subscribed")
        if not node.exists:
            attrs.append(b"NonExistent")
        if b"CHILDREN" in returns:
            attrs.append(b"HasChildren" if node.has_children else b"HasNoChildren")
        if special and name in SPECIAL_ATTRIBUTES:
            attrs.append(SPECIAL_ATTRIBUTES[name])
        listed.append(Listed(name, tuple(attrs), name in childinfo))
    return listed


class ExtendedListResponse(ListResponse):
    """``* LIST (...) "." name`` with RFC 5258's extended data: ``(CHILDINFO ("SUBSCRIBED"))``,
    and ``OLDNAME`` with the modified UTF-7 name of a name outside ASCII for a client that
    gets UTF-8 names (RFC 9051 6.3.9)."""

    def __init__(
        self, mailbox: str, sep: str | None, attrs: Iterable[bytes], items: Sequence[bytes]
    ) -> None:
        super().__init__(mailbox, sep, attrs)
        self.items = items

    @property
    def text(self) -> bytes:
        if not self.items:
            return super().text
        return super().text + b" (" + b" ".join(self.items) + b")"
