# ruff: noqa: F811 - the fixtures imported from test_imapd are the parameters
"""What the sessions of one imapd replica share (#13 performance) keeps every session right:
the \\Recent claim made by a SELECT's first look, changes another session made told by NOOP
(only what moved since the session last looked), and SEARCH HEADER over kept headers."""

from __future__ import annotations

import imaplib

from tests.integration.test_imapd import (  # noqa: F401 - fixtures
    MESSAGE,
    Stack,
    certificate,
    login,
    ok,
    run,
    settings,
    stack,
)


def recent(imap: imaplib.IMAP4) -> int:
    last = imap.untagged_responses.pop("RECENT", [b"-1"])[-1]
    assert isinstance(last, bytes)
    return int(last)


async def test_the_first_select_claims_recent_and_examine_does_not(stack: Stack) -> None:
    await stack.add_account("rita")
    for i in range(3):
        await stack.deliver("rita", MESSAGE, i)
    user = f"rita@{stack.domain}"

    def first() -> None:
        a = login(stack.port(), user)
        assert ok(a.select("INBOX")) == [b"3"]
        assert recent(a) == 3
        b = login(stack.port(), user)
        ok(b.select("INBOX"))
        assert recent(b) == 0
        a.logout()
        b.logout()

    await run(first)
    await stack.deliver("rita", MESSAGE, 10, announce=True)

    def later() -> None:
        c = login(stack.port(), user)
        ok(c.select("INBOX", readonly=True))
        assert recent(c) == 1  # EXAMINE reports it and leaves it to the next SELECT
        d = login(stack.port(), user)
        assert ok(d.select("INBOX")) == [b"4"]
        assert recent(d) == 1
        flags = b" ".join(x for x in ok(d.fetch("4", "(FLAGS)")) if isinstance(x, bytes))
        assert b"\\Recent" in flags
        c.logout()
        d.logout()

    await run(later)


async def test_another_sessions_changes_reach_a_selected_session(stack: Stack) -> None:
    await stack.add_account("sam")
    for i in range(5):
        await stack.deliver("sam", MESSAGE, i)
    user = f"sam@{stack.domain}"

    def client() -> None:
        a = login(stack.port(), user)
        b = login(stack.port(), user)
        ok(a.select("INBOX"))
        ok(b.select("INBOX"))
        ok(b.uid("STORE", "2", "+FLAGS", "(\\Flagged)"))
        ok(b.uid("STORE", "4", "+FLAGS", "(\\Deleted)"))
        ok(b.expunge())
        a.untagged_responses.clear()
        ok(a.noop())
        assert a.untagged_responses.get("EXPUNGE") == [b"4"]
        untagged = a.untagged_responses.get("FETCH", [])
        fetched = b" ".join(x for x in untagged if isinstance(x, bytes))
        assert b"\\Flagged" in fetched and b"2 (" in fetched
        assert [int(u) for u in ok(a.uid("SEARCH", "ALL"))[0].split()] == [1, 2, 3, 5]
        assert ok(a.uid("SEARCH", "FLAGGED")) == [b"2"]
        # the same folder again, in a third session: the shared view has the changes
        c = login(stack.port(), user)
        assert ok(c.select("INBOX")) == [b"4"]
        assert ok(c.uid("SEARCH", "FLAGGED")) == [b"2"]
        for s in (a, b, c):
            s.logout()

    await run(client)


async def test_search_header_over_kept_headers(stack: Stack) -> None:
    await stack.add_account("hal")
    subjects = [b"alpha one", b"=?utf-8?q?caf=C3=A9_two?=", b"Alpha\n  folded three", b"none"]
    for i, subject in enumerate(subjects):
        await stack.deliver("hal", b"Subject: " + subject + b"\nFrom: x@y.test\n\nbody\n", i)
    user = f"hal@{stack.domain}"

    def client() -> None:
        for _ in range(2):  # the second time from the replica's kept headers
            imap = login(stack.port(), user)
            ok(imap.select("INBOX"))
            assert ok(imap.uid("SEARCH", "HEADER", "Subject", "alpha")) == [b"1 3"]
            assert ok(imap.uid("SEARCH", "HEADER", "Subject", '"folded three"')) == [b"3"]
            assert ok(imap.uid("SEARCH", "HEADER", "Subject", "caf")) == [b"2"]
            assert ok(imap.uid("SEARCH", "HEADER", "X-None", '""')) == [b""]
            both = imap.uid("SEARCH", "HEADER", "Subject", "a", "HEADER", "From", "x@y")
            assert ok(both) == [b"1 2 3"]
            imap.logout()

    await run(client)
