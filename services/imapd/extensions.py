"""IMAP extensions pymap 0.36.7 does not parse, added through its own extension points (#13).

pymap finds a command's class by name in :class:`~pymap.parsing.commands.Commands` (a later
``register`` of the same name replaces the built-in) and runs it as ``do_<name>`` of the
connection state; here are those classes and a :class:`State` with their ``do_`` methods:

- QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT with the one root ``"User quota"`` and ``STORAGE``
  resource; SETQUOTA is ``NO [NOPERM]`` (quotas are the directory's, ``qmesh user quota``).
- NAMESPACE (RFC 2342): one personal namespace, ``(("" "."))``, as Dovecot's Maildir++.
- ENABLE (RFC 5161): answers ``* ENABLED`` with what it turned on of :data:`ENABLEABLE`
  (CONDSTORE, :mod:`services.imapd.condstore`; QRESYNC, :mod:`services.imapd.qresync`;
  IMAP4rev2, :mod:`services.imapd.rev2`).
- LIST-EXTENDED (RFC 5258): the options, pattern lists and answers of
  :mod:`services.imapd.listing`; a plain LIST or LSUB has ``\\HasChildren``,
  ``\\HasNoChildren`` and the special-use attributes (:mod:`services.imapd.session`).
- DELETE of a level that is no folder but has folders below: ``NO [HASCHILDREN]``.
- SASL-IR (RFC 4959): ``AUTHENTICATE PLAIN <base64>``, the response in the command line.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode

from pymap.exceptions import MailboxNotFound
from pymap.parsing import EndLine, Params, Space
from pymap.parsing.command import CommandAuth, CommandNoArgs
from pymap.parsing.command.auth import DeleteCommand, ListCommand, StatusCommand
from pymap.parsing.command.nonauth import AuthenticateCommand
from pymap.parsing.commands import Commands
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.modutf7 import modutf7_encode
from pymap.parsing.primitives import Atom, QuotedString
from pymap.parsing.response import (
    CommandResponse,
    ResponseCode,
    ResponseNo,
    ResponseOk,
    UntaggedResponse,
)
from pymap.parsing.response.specials import ListResponse, LSubResponse, StatusResponse
from pymap.parsing.specials import AString, Mailbox, StatusAttribute
from pymap.selected import SelectedMailbox

from qmesh.mailbox.quota import RESOURCE, ROOT, Quota
from services.imapd import listing
from services.imapd.condstore import CONDSTORE
from services.imapd.listing import ExtendedListCommand, ExtendedListResponse, Node
from services.imapd.qresync import QRESYNC
from services.imapd.rev2 import COMMANDS as REV2_COMMANDS
from services.imapd.rev2 import IMAP4REV2, Rev2State

ENABLEABLE = frozenset({CONDSTORE, QRESYNC, IMAP4REV2})  # what ENABLE can turn on
_LIMITS = re.compile(rb" \((?:[A-Za-z0-9\-]{1,32} [0-9]{1,20}(?: |(?=\))))*\)")
_INITIAL = re.compile(rb"[A-Za-z0-9+/]+={0,2}|=")

Ret = tuple[CommandResponse, SelectedMailbox | None]
_ENABLE_NAMES = {IMAP4REV2.upper(): IMAP4REV2}  # ENABLE reads names in upper case


class GetQuotaCommand(CommandAuth):
    command = b"GETQUOTA"

    def __init__(self, tag: bytes, root: bytes) -> None:
        super().__init__(tag)
        self.root = root

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[GetQuotaCommand, memoryview]:
        _, buf = Space.parse(buf, params)
        root, buf = AString.parse(buf, params)
        _, buf = EndLine.parse(buf, params)
        return cls(params.tag, root.value), buf


class GetQuotaRootCommand(CommandAuth):
    command = b"GETQUOTAROOT"

    def __init__(self, tag: bytes, mailbox: str) -> None:
        super().__init__(tag)
        self.mailbox = mailbox

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[GetQuotaRootCommand, memoryview]:
        _, buf = Space.parse(buf, params)
        mailbox, buf = Mailbox.parse(buf, params)
        _, buf = EndLine.parse(buf, params)
        return cls(params.tag, mailbox.value), buf


class SetQuotaCommand(CommandAuth):
    command = b"SETQUOTA"

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[SetQuotaCommand, memoryview]:
        _, buf = Space.parse(buf, params)
        _, buf = AString.parse(buf, params)
        m = _LIMITS.match(buf)
        if m is None:
            raise NotParseable(buf)
        _, buf = EndLine.parse(buf[m.end() :], params)
        return cls(params.tag), buf


class NamespaceCommand(CommandNoArgs, CommandAuth):
    command = b"NAMESPACE"


class EnableCommand(CommandAuth):
    command = b"ENABLE"

    def __init__(self, tag: bytes, names: list[bytes]) -> None:
        super().__init__(tag)
        self.names = names

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[EnableCommand, memoryview]:
        names: list[bytes] = []
        while True:
            try:
                _, buf = EndLine.parse(buf, params)
                break
            except NotParseable:
                if len(names) >= 32:
                    raise
            _, buf = Space.parse(buf, params)
            atom, buf = Atom.parse(buf, params)
            names.append(atom.value.upper())
        if not names:
            raise NotParseable(buf)
        return cls(params.tag, names), buf


class InitialResponseAuthenticate(AuthenticateCommand):
    """AUTHENTICATE with SASL-IR's initial response (``=`` for an empty one)."""

    def __init__(self, tag: bytes, mech_name: bytes, initial: bytes | None = None) -> None:
        super().__init__(tag, mech_name)
        self.initial = initial

    @classmethod
    def parse(
        cls, buf: memoryview, params: Params
    ) -> tuple[InitialResponseAuthenticate, memoryview]:
        _, buf = Space.parse(buf, params)
        atom, buf = Atom.parse(buf, params)
        try:
            _, buf = EndLine.parse(buf, params)
            return cls(params.tag, atom.value.upper()), buf
        except NotParseable:
            pass
        _, buf = Space.parse(buf, params)
        m = _INITIAL.match(buf)
        if m is None:
            raise NotParseable(buf)
        raw = m.group(0)
        buf = buf[m.end() :]
        _, buf = EndLine.parse(buf, params)
        try:
            initial = b"" if raw == b"=" else b64decode(raw, validate=True)
        except binascii.Error as err:
            raise NotParseable(buf) from err
        return cls(params.tag, atom.value.upper(), initial), buf


EXTENSIONS = (
    GetQuotaCommand,
    GetQuotaRootCommand,
    SetQuotaCommand,
    NamespaceCommand,
    EnableCommand,
    ExtendedListCommand,
    InitialResponseAuthenticate,
    *REV2_COMMANDS,
)


def commands() -> Commands:
    """pymap's commands with ours registered over and beside them."""
    registry = Commands()
    for cmd in EXTENSIONS:
        registry.register(cmd)
    return registry


def quota_response(quota: Quota) -> UntaggedResponse | None:
    storage = quota.storage()
    if storage is None:
        return None
    return UntaggedResponse(
        b"QUOTA %b (%b %d %d)" % (bytes(QuotedString(ROOT.encode())), RESOURCE.encode(), *storage)
    )


class State(Rev2State):
    """pymap's connection state with the ``do_`` methods of :data:`EXTENSIONS`."""

    @property
    def enabled(self) -> frozenset[bytes]:
        on = {CONDSTORE: self.condstore, QRESYNC: self.qresync, IMAP4REV2: self.rev2}
        return frozenset(name for name, yes in on.items() if yes)

    async def do_getquota(self, cmd: GetQuotaCommand) -> Ret:
        quota = await self._ours.mailbox_set.quota()
        found = quota_response(quota) if cmd.root == ROOT.encode() else None
        if found is None:
            return ResponseNo(
                cmd.tag, b"No such quota root.", ResponseCode.of(b"NONEXISTENT")
            ), None
        resp = ResponseOk(cmd.tag, b"GETQUOTA completed.")
        resp.add_untagged(found)
        return resp, None

    async def do_getquotaroot(self, cmd: GetQuotaRootCommand) -> Ret:
        folders = self._ours.mailbox_set
        if not await folders.exists(cmd.mailbox):
            raise MailboxNotFound(cmd.mailbox)
        quota = await folders.quota()
        found = quota_response(quota)
        roots = b" " + bytes(QuotedString(ROOT.encode())) if found is not None else b""
        resp = ResponseOk(cmd.tag, b"GETQUOTAROOT completed.")
        resp.add_untagged(
            UntaggedResponse(b"QUOTAROOT %b%b" % (bytes(Mailbox(cmd.mailbox)), roots))
        )
        if found is not None:
            resp.add_untagged(found)
        return resp, None

    async def do_setquota(self, cmd: SetQuotaCommand) -> Ret:
        text = b"Quotas are set by the administrator (qmesh user quota)."
        return ResponseNo(cmd.tag, text, ResponseCode.of(b"NOPERM")), None

    async def do_namespace(self, cmd: NamespaceCommand) -> Ret:
        delimiter = self._ours.mailbox_set.delimiter.encode()
        resp = ResponseOk(cmd.tag, b"NAMESPACE completed.")
        resp.add_untagged(
            UntaggedResponse(b'NAMESPACE (("" %b)) NIL NIL' % bytes(QuotedString(delimiter)))
        )
        return resp, None

    async def do_enable(self, cmd: EnableCommand) -> Ret:
        wanted = (_ENABLE_NAMES.get(n, n) for n in cmd.names)
        turned = [n for n in dict.fromkeys(wanted) if n in ENABLEABLE and n not in self.enabled]
        if CONDSTORE in turned:
            self.condstore = True
        if QRESYNC in turned:
            self.qresync = True  # and CONDSTORE with it (RFC 7162 3.2.3)
        if IMAP4REV2 in turned:
            self.rev2 = True  # services/imapd/rev2.py
        resp = ResponseOk(cmd.tag, b"ENABLE completed.")
        resp.add_untagged(UntaggedResponse(b" ".join([b"ENABLED", *turned])))
        return resp, None

    async def do_list(self, cmd: ListCommand) -> Ret:
        if isinstance(cmd, ExtendedListCommand) and cmd.extended:
            return await self._extended_list(cmd)
        mailboxes, updates = await self.session.list_mailboxes(
            cmd.ref_name, cmd.filter, subscribed=cmd.only_subscribed, selected=self._selected
        )
        resp = ResponseOk(cmd.tag, cmd.command + b" completed.")
        for name, sep, attrs in mailboxes:
            if cmd.only_subscribed:
                resp.add_untagged(LSubResponse(name, sep, attrs))
            else:
                resp.add_untagged(ExtendedListResponse(name, sep, attrs, self._oldname(name)))
        return resp, updates

    def _oldname(self, name: str) -> list[bytes]:
        """``OLDNAME`` for a UTF-8 name outside ASCII: its modified UTF-7 form (RFC 9051)."""
        if not self.rev2 or name.isascii():
            return []
        return [b"OLDNAME (%b)" % bytes(QuotedString(modutf7_encode(name)))]

    async def _extended_list(self, cmd: ExtendedListCommand) -> Ret:
        folders = self._ours.mailbox_set
        delimiter = folders.delimiter
        resp = ResponseOk(cmd.tag, cmd.command + b" completed.")
        if "" in cmd.patterns:  # the delimiter and root (RFC 3501 6.3.8)
            resp.add_untagged(ListResponse("", delimiter, [b"Noselect"]))
        tree = [
            Node(e.name, e.exists, e.has_children) for e in (await folders.list_mailboxes()).list()
        ]
        subscribed = frozenset((await folders.box.record()).subscribed())
        matches = listing.matcher(cmd.ref_name, [p for p in cmd.patterns if p], delimiter)
        for found in listing.select(tree, subscribed, matches, cmd.selection, cmd.returns):
            items = [b'CHILDINFO ("SUBSCRIBED")'] if found.childinfo else []
            items += self._oldname(found.name)
            resp.add_untagged(ExtendedListResponse(found.name, delimiter, found.attributes, items))
            if cmd.status and found.selectable:
                resp.add_untagged(*await self._list_status(cmd.tag, found.name, cmd.status))
        _, updates = await self.session.list_mailboxes("", "", selected=self._selected)
        return resp, updates

    async def _list_status(
        self, tag: bytes, name: str, status: tuple[bytes, ...]
    ) -> list[UntaggedResponse]:
        """LIST-STATUS: the STATUS answer of one listed folder (RFC 5819)."""
        attrs = [StatusAttribute(a) for a in status]
        resp, _ = await self.do_status(StatusCommand(tag, Mailbox(name), attrs))
        return [r for r in resp._untagged if isinstance(r, StatusResponse)]

    async def do_delete(self, cmd: DeleteCommand) -> Ret:
        """A level that is no folder but has folders below: ``NO [HASCHILDREN]`` (RFC 9051
        7.1), where Dovecot says ``[NONEXISTENT]``; a folder with folders below is deleted
        and they stay, as in Dovecot's Maildir++."""
        try:
            return await super().do_delete(cmd)
        except MailboxNotFound:
            entry = (await self._ours.mailbox_set.list_mailboxes()).get(cmd.mailbox)
            if entry is None or entry.exists or not entry.has_children:
                raise
        text = b"Mailbox has children; delete them first."
        return ResponseNo(cmd.tag, text, ResponseCode.of(b"HASCHILDREN")), None
