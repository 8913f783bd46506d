"""The session's effects beyond its replies: delays, updates, releases, limits, counters."""

from __future__ import annotations

import pytest

from qmesh.contract.errors import Temporary
from services.pop3d.session import Policy, Session
from tests.unit.pop3d.fakes import (
    MESSAGES,
    FakeAuthenticator,
    FakeMaildrop,
    FakeMaildrops,
    FakeRecorder,
    FakeSleep,
)

POLICY = Policy(hostname="mx.example.test", plaintext=True, tls_available=False)


class Rig:
    def __init__(self, policy: Policy = POLICY, contents: list[tuple[str, bytes]] | None = None):
        self.auth = FakeAuthenticator()
        self.drops = FakeMaildrops(contents)
        self.recorder = FakeRecorder()
        self.sleep = FakeSleep()
        self.session = Session(policy, self.auth, self.drops, self.recorder, sleep=self.sleep)

    @property
    def drop(self) -> FakeMaildrop:
        return self.drops.drop

    async def send(self, line: str) -> bytes:
        return (await self.session.handle(line.encode() + b"\r\n")).reply

    async def login(self) -> None:
        await self.send("USER alice")
        assert await self.send("PASS secret") == b"+OK \r\n"


async def test_failed_login_is_delayed_and_counted_pop3_04() -> None:
    rig = Rig()
    await rig.send("USER alice")
    assert await rig.send("PASS wrong") == b"-ERR [AUTH] authorization failed\r\n"
    assert rig.sleep.delays == [1.0]
    assert rig.recorder.logins == ["failed"]


async def test_success_and_tempfail_are_not_delayed_pop3_04() -> None:
    rig = Rig()
    await rig.send("USER broken")
    await rig.send("PASS x")
    await rig.login()
    assert rig.sleep.delays == []
    assert rig.recorder.logins == ["tempfail", "ok"]


async def test_malformed_plain_response_fails_like_wrong_password_pop3_42() -> None:
    rig = Rig()
    step = await rig.session.handle(b"AUTH PLAIN YWxpY2U=\r\n")  # "alice", no NULs
    assert step.reply == b"-ERR [AUTH] authorization failed\r\n"
    assert rig.sleep.delays == [1.0]


async def test_quit_updates_with_the_marked_messages_then_releases_pop3_21() -> None:
    rig = Rig()
    await rig.login()
    await rig.send("DELE 1")
    await rig.send("DELE 3")
    step = await rig.session.handle(b"QUIT\r\n")
    assert step.reply == b"+OK \r\n" and step.close
    assert rig.drop.updates == [frozenset({0, 2})]
    assert rig.drop.released == 1
    assert rig.recorder.deletions == 2


async def test_rset_unmarks_before_quit_pop3_19() -> None:
    rig = Rig()
    await rig.login()
    await rig.send("DELE 1")
    await rig.send("RSET")
    await rig.send("QUIT")
    assert rig.drop.updates == [frozenset()]


async def test_disconnect_without_quit_changes_nothing_pop3_22() -> None:
    rig = Rig()
    await rig.login()
    await rig.send("DELE 1")
    await rig.session.close()
    await rig.session.close()
    assert rig.drop.updates == []
    assert rig.drop.released == 1


async def test_failed_removal_is_the_only_reply_pop3_21() -> None:
    rig = Rig()
    rig.drop.fail_removals = 1
    await rig.login()
    await rig.send("DELE 2")
    step = await rig.session.handle(b"QUIT\r\n")
    assert step.reply == b"-ERR [SYS/TEMP] some deleted messages were not removed\r\n"
    assert step.close


async def test_update_impossible_reports_deletions_not_removed_pop3_21() -> None:
    rig = Rig()
    await rig.login()

    async def broken(deleted: frozenset[int]) -> int:
        raise Temporary("lease lost")

    rig.drop.update = broken  # type: ignore[method-assign]
    await rig.send("DELE 1")
    assert await rig.send("QUIT") == b"-ERR [SYS/TEMP] some deleted messages were not removed\r\n"
    assert rig.drop.released == 1


async def test_retrieve_outage_keeps_the_session_pop3_44() -> None:
    rig = Rig()
    await rig.login()
    rig.drop.unreadable = True
    assert await rig.send("RETR 1") == b"-ERR [SYS/TEMP] unable to read the message\r\n"
    assert await rig.send("NOOP") == b"+OK \r\n"


async def test_vanished_message_pop3_44() -> None:
    rig = Rig(contents=[("gone", b"x\n")])
    await rig.login()
    assert await rig.send("RETR 1") == b"-ERR [SYS/PERM] message no longer exists\r\n"


async def test_retrievals_are_counted() -> None:
    rig = Rig()
    await rig.login()
    await rig.send("RETR 1")
    await rig.send("TOP 1 0")
    assert rig.recorder.retrievals == 1


async def test_empty_mailbox_pop3_10() -> None:
    rig = Rig(contents=[])
    await rig.login()
    assert await rig.send("STAT") == b"+OK 0 0\r\n"
    assert await rig.send("LIST") == b"+OK \r\n.\r\n"
    assert await rig.send("RETR 1") == b"-ERR not that many messages\r\n"


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"NOOP" + b" " * 249 + b"\r\n", b"+OK \r\n"),  # 255 octets with CR LF
        (b"NOOP" + b" " * 250 + b"\r\n", b"-ERR line too long\r\n"),
        (b"NOOP\n", b"+OK \r\n"),  # bare LF ends a line (POP3-24)
    ],
)
async def test_line_limit_and_line_ends_pop3_24(line: bytes, reply: bytes) -> None:
    rig = Rig()
    assert (await rig.session.handle(line)).reply == reply


async def test_overlong_line_cut_by_the_reader_pop3_24() -> None:
    rig = Rig()
    step = await rig.session.handle(b"USER aaaa", overlong=True)
    assert step.reply == b"-ERR line too long\r\n"
    assert not step.close


async def test_sasl_responses_may_exceed_the_command_limit_pop3_24() -> None:
    rig = Rig()
    long = "A" * 400  # valid base64, decodes to no NULs: a malformed response, not too long
    step = await rig.session.handle(f"AUTH PLAIN {long}\r\n".encode())
    assert step.reply == b"-ERR [AUTH] authorization failed\r\n"
    await rig.session.handle(b"AUTH PLAIN\r\n")
    step = await rig.session.handle(long.encode() + b"\r\n")
    assert step.reply == b"-ERR [AUTH] authorization failed\r\n"


async def test_pipelined_commands_answer_in_order_pop3_45() -> None:
    rig = Rig()
    replies = [await rig.send(c) for c in ("USER alice", "PASS secret", "STAT", "QUIT")]
    assert replies == [b"+OK \r\n", b"+OK \r\n", b"+OK 3 111\r\n", b"+OK \r\n"]


async def test_user_name_and_password_reach_the_authenticator_verbatim_pop3_03() -> None:
    rig = Rig()
    await rig.send("USER  Alice@Example.TEST")
    await rig.send("PASS  pass word ")
    assert rig.auth.calls == [("Alice@Example.TEST", "pass word ")]


async def test_messages_present_at_login_are_numbered_in_order_pop3_10() -> None:
    rig = Rig()
    await rig.login()
    reply = await rig.send("UIDL")
    uids = [line.split(b" ")[1].decode() for line in reply.split(b"\r\n")[1:-2]]
    assert uids == [u for u, _ in MESSAGES]
