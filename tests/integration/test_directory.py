"""The directory on a real nats-server: records, compare-and-set edits, admin rules, the CLI,
the watches after a restart (LOCAL-50..LOCAL-59, LOCAL-07, LOCAL-27, hardening #9). Each test
uses domain names of its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.cli.admin import add_admin_commands, run_admin
from qmesh.cli.natsd import NatsServer, start_nats_server
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.directory import admin
from qmesh.directory.cache import CachedDirectory, DirectoryCache
from qmesh.directory.domains import DirectoryDomains
from qmesh.directory.errors import InvalidRule, RecordExists, RecordMissing, Refused
from qmesh.directory.namespaces import Namespaces, Target
from qmesh.directory.passwords import HashParams, verify_password
from qmesh.directory.records import AccountRecord, DomainRecord
from qmesh.directory.store import Directory, DirectoryUnavailable
from qmesh.runtime.settings import Settings
from tests.servers import free_ports

pytestmark = pytest.mark.integration

CHEAP = HashParams(time_cost=1, memory_kib=8, parallelism=1)


@pytest.fixture
async def directory(nats_url: str) -> AsyncIterator[Directory]:
    nc = await nats.connect(nats_url)
    try:
        yield await Directory.open(nc.jetstream())
    finally:
        await nc.close()


@pytest.fixture
def domain(unique: str) -> str:
    return f"d{unique}.test"


async def test_create_get_and_list_records_local50(directory: Directory, domain: str) -> None:
    assert await directory.get_domain(domain) is None
    await directory.create_domain(DomainRecord(name=domain))
    await directory.create_account(AccountRecord(domain=domain, name="bob", quota=5000))
    await directory.create_account(AccountRecord(domain=domain, name="alice"))

    assert await directory.get_domain(domain) == DomainRecord(name=domain)
    bob = await directory.get_account(domain, "bob")
    assert bob is not None and bob.quota == 5000
    assert await directory.get_account(domain, "carol") is None
    assert [a.name for a in await directory.list_accounts(domain)] == ["alice", "bob"]
    assert domain in [d.name for d in await directory.list_domains()]

    with pytest.raises(RecordExists, match=f"account bob@{domain} already exists"):
        await directory.create_account(AccountRecord(domain=domain, name="bob"))
    with pytest.raises(RecordExists, match=f"domain {domain} already exists"):
        await directory.create_domain(DomainRecord(name=domain))


async def test_records_carry_their_names_and_keys_are_never_parsed_back(
    directory: Directory, domain: str
) -> None:
    """``account.<d>.a.b`` is account ``a.b`` of ``<d>`` or ``b`` of ``<d>.a``: one of them."""
    sub = f"{domain}.a"
    await directory.create_account(AccountRecord(domain=domain, name="a.b"))
    with pytest.raises(RecordExists, match="used by another account"):
        await directory.create_account(AccountRecord(domain=sub, name="b"))
    assert await directory.get_account(sub, "b") is None
    assert [a.address for a in await directory.list_accounts(domain)] == [f"a.b@{domain}"]
    assert await directory.list_accounts(sub) == []


async def test_concurrent_edits_are_all_applied_local55(directory: Directory, domain: str) -> None:
    await directory.create_account(AccountRecord(domain=domain, name="bob"))

    async def add(rule: str) -> None:
        await directory.update_account(
            domain, "bob", lambda r: r.changed(rules={**r.rules, rule: "./Maildir/\n"})
        )

    names = [f"r{i}" for i in range(5)]
    await asyncio.gather(
        *(add(n) for n in names),
        directory.update_account(domain, "bob", lambda r: r.changed(quota=123)),
    )
    bob = await directory.get_account(domain, "bob")
    assert bob is not None
    assert sorted(bob.rules) == names
    assert bob.quota == 123


async def test_deleted_account_can_be_created_again(directory: Directory, domain: str) -> None:
    await directory.create_account(AccountRecord(domain=domain, name="bob", quota=1))
    await directory.delete_account(domain, "bob")
    assert await directory.get_account(domain, "bob") is None
    assert await directory.list_accounts(domain) == []
    await directory.create_account(AccountRecord(domain=domain, name="bob"))
    bob = await directory.get_account(domain, "bob")
    assert bob is not None and bob.quota is None
    with pytest.raises(RecordMissing, match=f"no such account: carol@{domain}"):
        await directory.delete_account(domain, "carol")


async def test_unreadable_directory_is_temporary_never_absent_local07(tmp_path: Path) -> None:
    server = start_nats_server(tmp_path / "nats")
    nc = await nats.connect(server.url, reconnect_time_wait=0.2, error_cb=_quiet)
    try:
        directory = await Directory.open(nc.jetstream(), op_timeout=1.0)
        await directory.create_domain(DomainRecord(name="down.test"))
        server.stop()
        with pytest.raises(DirectoryUnavailable) as err:
            await directory.get_domain("down.test")
        assert isinstance(err.value, Temporary)
        assert err.value.text == "Unable to read the directory. (#4.3.0)"
        with pytest.raises(DirectoryUnavailable):
            await directory.list_domains()
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            await nc.close()


async def _quiet(err: Exception) -> None:
    """The server is stopped on purpose: its connection errors are expected."""


async def test_add_domain_creates_postmaster_rule_and_account_local56(
    directory: Directory, domain: str
) -> None:
    record = await admin.add_domain(directory, domain)
    assert record.rules == {"postmaster": f"&postmaster@{domain}\n"}
    assert await directory.get_domain(domain) == record
    postmaster = await directory.get_account(domain, "postmaster")
    assert postmaster is not None and postmaster.verifier is None  # cannot log in

    other = f"x{domain}"
    record = await admin.add_domain(directory, other, "hostmaster@example.net")
    assert record.rules == {"postmaster": "&hostmaster@example.net\n"}
    assert await directory.list_accounts(other) == []

    third = f"y{domain}"
    record = await admin.add_domain(directory, third.upper(), "Boss")
    assert record.name == third
    assert record.rules == {"postmaster": f"&boss@{third}\n"}
    assert await directory.get_account(third, "boss") is not None


async def test_add_domain_refusals_local58(directory: Directory, domain: str) -> None:
    namespaces = Namespaces.build(f"mx.{domain}", [f"mx.{domain}", f"alias.{domain}"])
    with pytest.raises(Refused, match=f"alias.{domain} is listed in control/locals"):
        await admin.add_domain(directory, f"alias.{domain}", namespaces=namespaces)
    assert await directory.get_domain(f"alias.{domain}") is None
    await admin.add_domain(directory, f"mx.{domain}", namespaces=namespaces)  # canonical: fine
    with pytest.raises(RecordExists):
        await admin.add_domain(directory, f"mx.{domain}")
    with pytest.raises(RecordMissing, match="no such domain"):
        await admin.add_user(directory, Target(f"nowhere.{domain}", "bob"), None)


async def test_domain_rules_and_deletion_refusals_local27(
    directory: Directory, domain: str
) -> None:
    await admin.add_domain(directory, domain)
    at = Target(domain, None)
    with pytest.raises(Refused, match="postmaster"):
        await admin.delete_rule(directory, at, ".qmail-postmaster")
    with pytest.raises(InvalidRule, match="empty"):
        await admin.set_rule(directory, at, "postmaster", "")
    with pytest.raises(InvalidRule, match="no mailbox"):
        await admin.set_rule(directory, at, ".qmail-default", "./Maildir/\n")
    assert await admin.set_rule(directory, at, ".qmail-Sales.Team", "&bob@example.net\n") == (
        "sales:team"
    )
    assert await admin.show_rule(directory, at, "sales.team") == "&bob@example.net\n"
    await admin.delete_rule(directory, at, "sales:team")
    assert sorted(await admin.get_rules(directory, at)) == ["postmaster"]

    with pytest.raises(Refused, match=f"domain {domain} still has 1 account"):
        await admin.delete_domain(directory, domain)
    await admin.delete_user(directory, Target(domain, "postmaster"))
    await admin.delete_domain(directory, domain)
    assert await directory.get_domain(domain) is None


async def test_account_edits(directory: Directory, domain: str) -> None:
    await admin.add_domain(directory, domain)
    bob = Target(domain, "bob")
    await admin.add_user(directory, bob, "first", params=CHEAP)
    with pytest.raises(RecordExists):
        await admin.add_user(directory, bob, None)
    await admin.set_password(directory, bob, "second", params=CHEAP)
    await admin.set_quota(directory, bob, 10_000)
    await admin.set_enabled(directory, bob, False)
    record = await directory.get_account(domain, "bob")
    assert record is not None
    assert verify_password(record.verifier, "second")
    assert not verify_password(record.verifier, "first")
    assert (record.quota, record.enabled) == (10_000, False)
    await admin.set_password(directory, bob, None)
    record = await directory.get_account(domain, "bob")
    assert record is not None and record.verifier is None


# -- the CLI, in process --------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qmesh")
    add_admin_commands(parser.add_subparsers(dest="command", required=True))
    return parser


class Cli:
    def __init__(self, environ: dict[str, str]) -> None:
        self.environ = environ

    async def __call__(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await run_admin(
            _parser().parse_args(argv),
            environ=self.environ,
            stdin=io.StringIO(stdin),
            stdout=out,
            stderr=err,
        )
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cli(nats_url: str, control_dir: Path, domain: str) -> Cli:
    (control_dir / "me").write_text(f"mx.{domain}\n")
    (control_dir / "locals").write_text(f"mx.{domain}\nalias.{domain}\n")
    return Cli({"QMESH_NATS_URL": nats_url, "QMESH_CONTROL": str(control_dir)})


async def test_cli_round_trip_local58(cli: Cli, directory: Directory, domain: str) -> None:
    code, out, _ = await cli("domain", "add", domain)
    assert code == 0 and f"postmaster -> postmaster@{domain}" in out

    code, out, _ = await cli("user", "add", f"Bob@{domain}", "--password-stdin", stdin="s3cret\n")
    assert (code, out) == (0, f"added account bob@{domain}\n")
    bob = await directory.get_account(domain, "bob")
    assert bob is not None and verify_password(bob.verifier, "s3cret")

    code, out, _ = await cli("user", "passwd", f"bob@{domain}", "--password-stdin", stdin="n3w\n")
    bob = await directory.get_account(domain, "bob")
    assert code == 0 and bob is not None and verify_password(bob.verifier, "n3w")

    assert (await cli("user", "quota", f"bob@{domain}", "1000"))[0] == 0
    assert (await cli("user", "disable", f"bob@{domain}"))[0] == 0
    code, out, _ = await cli("user", "list", domain)
    assert code == 0
    assert out.splitlines() == [
        f"bob@{domain}\tdisabled\tpassword\tquota=1000",
        f"postmaster@{domain}\tenabled\tno-password\tquota=none",
    ]
    assert "argon2" not in out  # verifiers are never shown (LOCAL-59)

    rule = "&alice@example.net\n./Maildir/.Lists/\n"
    code, out, _ = await cli("rule", "set", f"bob@{domain}", ".qmail-Foo.Bar", stdin=rule)
    assert (code, out) == (0, f"rule .qmail-foo:bar of bob@{domain} set\n")
    assert await cli("rule", "show", f"bob@{domain}", ".qmail-foo.bar") == (0, rule, "")
    code, out, _ = await cli("rule", "show", f"@{domain}")
    assert out == f"==> .qmail-postmaster <==\n&postmaster@{domain}\n"

    code, _, err = await cli("rule", "del", f"@{domain}", ".qmail-postmaster")
    assert code == 1 and "postmaster" in err
    code, _, err = await cli("rule", "set", f"@{domain}", ".qmail-default", stdin="./Maildir/\n")
    assert code == 1 and "domain rules have no mailbox" in err
    code, _, err = await cli("domain", "del", domain)
    assert code == 1 and "still has 2 account(s)" in err

    for name in ("bob", "postmaster"):
        assert (await cli("user", "del", f"{name}@{domain}"))[0] == 0
    assert await cli("domain", "del", domain) == (0, f"deleted domain {domain}\n", "")
    code, _, err = await cli("user", "list", domain)
    assert code == 1 and f"no such domain: {domain}" in err


async def test_cli_says_when_an_account_keeps_a_domain_rule_unused_local04(
    cli: Cli, directory: Directory, domain: str
) -> None:
    """hardening #14: accounts come before domain rules (LOCAL-03, LOCAL-04), as a qmail user
    comes before ~alias/.qmail-<name>; the CLI stores the rule and says it is not used."""
    assert (await cli("domain", "add", domain))[0] == 0  # makes account postmaster
    code, out, _ = await cli(
        "rule", "set", f"@{domain}", ".qmail-postmaster", stdin="&boss@example.net\n"
    )
    assert code == 0
    assert out == (
        f"rule .qmail-postmaster of @{domain} set\n"
        f"note: this rule is not used while account postmaster@{domain} exists: that account "
        f"receives its mail first; change its rule instead "
        f"(qmesh rule set postmaster@{domain} .qmail) or delete the account\n"
    )
    code, out, _ = await cli(
        "rule", "set", f"@{domain}", ".qmail-sales-default", stdin="&b@x.net\n"
    )
    assert (code, out) == (0, f"rule .qmail-sales-default of @{domain} set\n")  # no account
    code, out, _ = await cli("user", "add", f"sales@{domain}", "--no-password")
    assert out == (
        f"added account sales@{domain} (no password)\n"
        f"note: the domain rule .qmail-sales-default of @{domain} is no longer used: "
        f"account sales@{domain} receives that mail first\n"
    )
    code, out, _ = await cli("rule", "set", f"@{domain}", ".qmail-info", stdin="&b@x.net\n")
    assert (code, out) == (0, f"rule .qmail-info of @{domain} set\n")


async def test_cli_bare_names_use_the_canonical_local_domain_send16(
    cli: Cli, directory: Directory, domain: str
) -> None:
    assert (await cli("domain", "add", f"mx.{domain}"))[0] == 0
    code, out, _ = await cli("user", "add", "carol", "--no-password")
    assert (code, out) == (0, f"added account carol@mx.{domain} (no password)\n")
    code, out, _ = await cli("user", "add", f"dave@alias.{domain}", "--no-password")
    assert out == f"added account dave@mx.{domain} (no password)\n"  # a locals alias
    code, _, err = await cli("domain", "add", f"alias.{domain}")
    assert code == 1 and f"alias.{domain} is listed in control/locals" in err
    assert await directory.get_domain(f"alias.{domain}") is None


async def test_cli_refuses_bad_input_naming_it(cli: Cli, domain: str) -> None:
    code, _, err = await cli("user", "add", f"root@{domain}", "--no-password")
    assert code == 1 and "'root'" in err
    code, _, err = await cli("domain", "add", "bad_name.test")
    assert code == 1 and "'bad_name.test'" in err
    code, _, err = await cli("user", "add", f"bob@{domain}", "--password-stdin", stdin="")
    assert code == 1 and "no password on standard input" in err
    code, _, err = await cli("user", "quota", f"bob@{domain}", "lots")
    assert code == 1 and "'lots'" in err


async def test_cli_unreachable_nats_is_temporary(control_dir: Path, domain: str) -> None:
    (port,) = free_ports(1)
    cli = Cli({"QMESH_NATS_URL": f"nats://127.0.0.1:{port}", "QMESH_CONTROL": str(control_dir)})
    code, _, err = await cli("domain", "list")
    assert code == 111
    assert f"cannot reach NATS at nats://127.0.0.1:{port}" in err


async def test_watched_domain_names_follow_the_directory_send16(
    nats_url: str, directory: Directory, domain: str
) -> None:
    """smtpd and send see a new directory domain (names with dots included) without a restart."""
    conn = NatsConnection(Settings(nats_url=nats_url), "test", kv_buckets=(subjects.KV_DIRECTORY,))
    await conn.start()
    watched = DirectoryDomains(conn)
    await watched.start()
    try:
        await asyncio.wait_for(watched.loaded.wait(), 10)
        await admin.add_domain(directory, domain)
        await _eventually(lambda: domain in watched.names)
        await admin.delete_user(directory, Target(domain, "postmaster"))
        await admin.delete_domain(directory, domain)
        await _eventually(lambda: domain not in watched.names)
    finally:
        await watched.stop()
        await conn.stop()


async def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {seconds} s")


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """A nats-server on a port of its own that the test may kill and start again."""
    servers = [start_nats_server(tmp_path / "nats", port=free_ports(1)[0])]
    yield servers
    servers[-1].stop()


async def _kept(cache: DirectoryCache, reader: CachedDirectory, domain: str) -> None:
    """Read ``domain`` until the copy keeps it (a read that overlaps a change heard is not kept)."""
    for _ in range(100):
        assert await reader.get_domain(domain) is not None
        if cache.get(f"domain.{domain}") is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{domain} not kept")


async def test_hardening_9_directory_watches_start_again_after_nats_restarts(
    restartable: list[NatsServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted server may have lost the watches' ordered consumers: smtpd's and send's
    domain names and local's copy of records are watched again, and local's copy keeps nothing
    that no watch covered."""
    server = restartable[0]
    nc = await nats.connect(
        server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=_quiet
    )
    directory = await Directory.open(nc.jetstream())
    await admin.add_domain(directory, "before.test")
    conn = NatsConnection(
        Settings(nats_url=server.url), "test", kv_buckets=(subjects.KV_DIRECTORY,)
    )
    await conn.start()
    domains = DirectoryDomains(conn)
    cache = DirectoryCache(conn)
    reader = cache.reader(lambda: Directory(conn.kv(subjects.KV_DIRECTORY)))
    try:
        await domains.start()
        await cache.start()
        await asyncio.wait_for(domains.loaded.wait(), 10)
        await _eventually(lambda: cache.watching)
        await _kept(cache, reader, "before.test")

        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        restartable.append(
            start_nats_server(tmp_path / "nats", port=int(server.url.rsplit(":", 1)[1]))
        )

        await _eventually(lambda: not cache.watching, 20)  # the copy forgets what it held
        assert cache.get("domain.before.test") is None
        await _eventually(lambda: cache.watching, 20)  # and is watched again
        assert any(
            r.getMessage() == "directory.watch_failed"
            and getattr(r, "reason", "") == "NATS reconnected; watching again"
            for r in caplog.records
        )

        await admin.add_domain(directory, "after.test")
        await _eventually(lambda: "after.test" in domains.names)
        assert "before.test" in domains.names
        await domains.check()  # ready: the names read before stayed in use

        await _kept(cache, reader, "after.test")
        await admin.set_domain_enabled(directory, "after.test", False)
        await _eventually(lambda: cache.get("domain.after.test") is None)  # the new watch hears it
        found = await reader.get_domain("after.test")
        assert found is not None and not found.enabled
    finally:
        await cache.stop()
        await domains.stop()
        await conn.stop()
        with contextlib.suppress(Exception):
            await nc.close()


async def test_cli_vacation_reply(cli: Cli, directory: Directory, domain: str) -> None:
    """Issue 14: ``qmesh user vacation`` sets and clears the reply the admin page edits; a
    subject with a line break is refused with the reason, and nothing is stored."""
    assert (await cli("domain", "add", domain))[0] == 0
    assert (await cli("user", "add", f"bob@{domain}", "--no-password"))[0] == 0
    code, out, _ = await cli(
        "user", "vacation", f"bob@{domain}", "--subject", "Away", "--days", "3", stdin="Gone.\r\n"
    )
    assert (code, out) == (0, f"vacation reply of bob@{domain}: on, once in 3 days per sender\n")
    bob = await directory.get_account(domain, "bob")
    assert bob is not None and bob.vacation is not None
    assert (bob.vacation.subject, bob.vacation.text, bob.vacation.days) == ("Away", "Gone.\n", 3)
    for args, reason in (
        (("--subject", "Away\nBcc: x@evil.test"), "invalid vacation subject"),
        (("--subject", "Away", "--days", "30"), "invalid vacation days"),
        ((), "give --subject"),
    ):
        code, _, err = await cli("user", "vacation", f"bob@{domain}", *args, stdin="x\n")
        assert code == 1 and reason in err, (args, err)
    assert (await cli("user", "vacation", f"bob@{domain}", "--off"))[0] == 0
    bob = await directory.get_account(domain, "bob")
    assert bob is not None and bob.vacation is None
