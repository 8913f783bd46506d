"""In-memory fakes of the session's ports, for unit tests of the state machine only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from qmesh.contract.errors import Temporary
from qmesh.directory.authenticate import Account
from qmesh.store.maildir import pop3_size
from services.pop3d.ports import MaildropInUse, MessageGone, MessageInfo

DOMAIN = "example.test"

MESSAGES: tuple[tuple[str, bytes], ...] = (
    (
        "1732510000.M001Qaaaaaaaaaaaaaaaa.qmesh",
        b"From: bob@example.test\nSubject: one\n\nline 1\n.dot line\nline 3\n",
    ),
    ("1732510001.M002Qbbbbbbbbbbbbbbbb.qmesh", b"Subject: two\n\nbody\n"),
    ("1732510002.M003Qcccccccccccccccc.qmesh", b"no separator\nat all\n"),
)


class FakeAuthenticator:
    """alice/secret logs in; ``broken`` makes the directory unavailable."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def authenticate(self, login: str, password: str) -> Account | None:
        self.calls.append((login, password))
        if login == "broken":
            raise Temporary("directory unavailable")
        name = login.lower()
        if name in ("alice", "busy", "outage") and password == "secret":
            return Account(DOMAIN, name)
        return None


@dataclass
class FakeMaildrop:
    contents: list[tuple[str, bytes]]
    updates: list[frozenset[int]] = field(default_factory=list)
    released: int = 0
    fail_removals: int = 0
    unreadable: bool = False

    @property
    def messages(self) -> Sequence[MessageInfo]:
        return [MessageInfo(u, pop3_size(c)) for u, c in self.contents]

    async def retrieve(self, index: int) -> bytes:
        if self.unreadable:
            raise Temporary("store down")
        unique, content = self.contents[index]
        if unique == "gone":
            raise MessageGone(unique)
        return content

    async def update(self, deleted: frozenset[int]) -> int:
        self.updates.append(deleted)
        return min(self.fail_removals, len(deleted))

    async def release(self) -> None:
        self.released += 1


class FakeMaildrops:
    def __init__(self, contents: list[tuple[str, bytes]] | None = None) -> None:
        self.drop = FakeMaildrop(list(MESSAGES) if contents is None else contents)
        self.opened: list[Account] = []

    async def open(self, account: Account) -> FakeMaildrop:
        self.opened.append(account)
        if account.name == "busy":
            raise MaildropInUse(str(account))
        if account.name == "outage":
            raise Temporary("store down")
        return self.drop


@dataclass
class FakeRecorder:
    logins: list[str] = field(default_factory=list)
    retrievals: int = 0
    deletions: int = 0

    def login(self, result: str) -> None:
        self.logins.append(result)

    def retrieved(self) -> None:
        self.retrievals += 1

    def deleted(self, count: int) -> None:
        self.deletions += count


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
