"""Login name to account, and every failure costing one verification (POP3-05, LOCAL-59)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qmesh.contract.errors import Temporary
from qmesh.directory.authenticate import Account, DirectoryAuthenticator
from qmesh.directory.namespaces import Namespaces

GOOD = "$good-verifier$"


@dataclass(frozen=True)
class Domain:
    enabled: bool = True


@dataclass(frozen=True)
class Record:
    verifier: str | None = GOOD
    enabled: bool = True


class FakeDirectory:
    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.domains = {"hosted.test": Domain(), "off.test": Domain(enabled=False)}
        self.accounts = {
            ("mx.example.test", "alice"): Record(),
            ("hosted.test", "alice"): Record(),
            ("hosted.test", "bob"): Record(),
            ("off.test", "carol"): Record(),
            ("mx.example.test", "disabled"): Record(enabled=False),
            ("mx.example.test", "nopass"): Record(verifier=None),
        }

    async def get_domain(self, name: str) -> Domain | None:
        if self.broken:
            raise Temporary("directory unavailable")
        return self.domains.get(name)

    async def get_account(self, domain: str, name: str) -> Record | None:
        return self.accounts.get((domain, name))


class Verifier:
    """Counts verifications; the right password against GOOD is "pw"."""

    def __init__(self) -> None:
        self.calls: list[str | None] = []

    async def __call__(self, verifier: str | None, password: str) -> bool:
        self.calls.append(verifier)
        return verifier == GOOD and password == "pw"


NAMESPACES = Namespaces.build(
    "mx.example.test",
    ["mx.example.test", "example.test"],
    [("virtual.test", "alias-virtual"), ("bob@hosted.test", "bobby")],
)


def authenticator(directory: FakeDirectory, verify: Verifier) -> DirectoryAuthenticator:
    return DirectoryAuthenticator(lambda: directory, lambda: NAMESPACES, verify=verify)


@pytest.mark.parametrize(
    ("login", "account"),
    [
        ("alice", Account("mx.example.test", "alice")),
        ("ALICE", Account("mx.example.test", "alice")),
        ("alice@example.test", Account("mx.example.test", "alice")),
        ("Alice@MX.Example.Test", Account("mx.example.test", "alice")),
        ("alice@hosted.test", Account("hosted.test", "alice")),
    ],
)
async def test_login_names_an_account_pop3_05(login: str, account: Account) -> None:
    verify = Verifier()
    assert await authenticator(FakeDirectory(), verify).authenticate(login, "pw") == account
    assert verify.calls == [GOOD]


@pytest.mark.parametrize(
    ("login", "password"),
    [
        ("alice", "wrong"),
        ("nobody", "pw"),  # unknown account
        ("alice@elsewhere.test", "pw"),  # not local, not in the directory
        ("alice@virtual.test", "pw"),  # a virtualdomains domain names no account
        ("bob@hosted.test", "pw"),  # a virtualdomains address names no account
        ("carol@off.test", "pw"),  # disabled domain
        ("disabled", "pw"),
        ("nopass", "pw"),
        ("root", "pw"),
        ("root@example.test", "pw"),
        ("../alice", "pw"),
        ("al ice", "pw"),
        ("alice@", "pw"),
        ("alice@bad..domain", "pw"),
        ("a" * 300, "b" * 300),  # name and password over 512 bytes
        ("alice", "p" * 510),
    ],
)
async def test_every_failure_costs_one_verification_pop3_05(login: str, password: str) -> None:
    verify = Verifier()
    assert await authenticator(FakeDirectory(), verify).authenticate(login, password) is None
    assert len(verify.calls) == 1


async def test_unreadable_directory_is_temporary_pop3_04() -> None:
    with pytest.raises(Temporary):
        await authenticator(FakeDirectory(broken=True), Verifier()).authenticate("alice", "pw")
