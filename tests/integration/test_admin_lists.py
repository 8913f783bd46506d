"""admin's list pages over real HTTP against the running service (issues 14 and 15).

The pages call the functions behind ``qmesh list``; what is checked is what a browser or an
attacker sees (status codes, pages) and what the directory and the lists' bucket hold after.
"""

from __future__ import annotations

import re

import httpx
import nats
import pytest

from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.directory import admin
from qmesh.directory.namespaces import Target
from qmesh.lists import state
from qmesh.lists.records import LIST_RULE
from tests.integration import test_admin_web
from tests.integration.test_admin_web import PM_PASSWORD, Admin, as_system, csrf, login

pytestmark = pytest.mark.integration
site = test_admin_web.site  # the running admin service, as the other pages' tests have it


async def _names(url: str, domain: str) -> list[str]:
    """The names of the domain's lists, as the directory holds them."""
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(subjects.KV_DIRECTORY)
        return sorted(r.name for r in await state.ListDirectory(kv).in_domain(domain))
    finally:
        await nc.close()


async def _subscribers(url: str, address: str) -> state.Subscribers:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(subjects.KV_LISTS)
        return await state.subscribers(kv, address)
    finally:
        await nc.close()


async def _create(
    client: httpx.AsyncClient, token: str, domain: str, name: str, **extra: str
) -> httpx.Response:
    return await client.post(
        f"/domains/{domain}/lists", data={"csrf": token, "list": name, **extra}
    )


async def test_admin_creates_shows_subscribes_pages_and_deletes_a_list(
    site: Admin, private_nats: NatsServer
) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "lists.test"})
        page = await client.get("/domains/lists.test/lists")
        assert page.status_code == 200 and "No lists." in page.text
        reply = await _create(
            client,
            token,
            "lists.test",
            "Announce",
            moderated="1",
            digest="1",
            archive="1",
            moderators="boss@lists.test\nmod@other.test",
            prefix="[ann]",
            digest_format="rfc1153",
            digest_every="10",
        )
        assert reply.status_code == 303, reply.text
        assert reply.headers["location"] == "/domains/lists.test/lists/announce"
        # what qmesh list create writes: the record and the two domain rules
        domain = await site.directory.get_domain("lists.test")
        assert domain is not None
        assert domain.rules["announce"] == domain.rules["announce-default"] == LIST_RULE
        page = await client.get("/domains/lists.test/lists")
        assert "announce@lists.test" in page.text and "moderated" in page.text
        # add 120 subscribers (100 at most per form) and one digest subscriber
        many = [f"user{i:03}@example.test" for i in range(120)]
        for chunk in (many[:100], many[100:]):
            reply = await client.post(
                "/domains/lists.test/lists/announce/add",
                data={"csrf": token, "addresses": "\r\n".join(chunk)},
            )
            assert reply.status_code == 303, reply.text
        reply = await client.post(
            "/domains/lists.test/lists/announce/add",
            data={"csrf": token, "addresses": "digest@example.test", "digest": "1"},
        )
        assert reply.status_code == 303
        show = await client.get("/domains/lists.test/lists/announce")
        assert "flags: moderated digest archive" in show.text
        assert "digest: every 10 posts or 24 hours (rfc1153)" in show.text
        assert "subscribers: 120  digest subscribers: 1" in show.text
        assert "user000@example.test" in show.text and "user050@example.test" not in show.text
        assert "page 1 of 3" in show.text
        last = await client.get("/domains/lists.test/lists/announce?page=3")
        assert "user100@example.test" in last.text and "user099@example.test" not in last.text
        digest = await client.get("/domains/lists.test/lists/announce?digest=1")
        assert "digest@example.test" in digest.text and "user000" not in digest.text
        reply = await client.post(
            "/domains/lists.test/lists/announce/remove",
            data={"csrf": token, "addresses": "USER000@example.test"},
        )
        assert reply.status_code == 303
        subs = await _subscribers(private_nats.url, "announce@lists.test")
        assert len(subs.sub) == 119 and not subs.has("user000@example.test")
        reply = await client.post("/domains/lists.test/lists/announce/delete", data={"csrf": token})
        assert reply.status_code == 303
        assert (await client.get("/domains/lists.test/lists/announce")).status_code == 404
    domain = await site.directory.get_domain("lists.test")
    assert domain is not None and "announce" not in domain.rules
    subs = await _subscribers(private_nats.url, "announce@lists.test")
    assert subs.sub == () and subs.digest == ()


async def test_a_list_is_refused_as_the_cli_refuses_it(
    site: Admin, private_nats: NatsServer
) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "refuse.test"})
        await client.post(
            "/domains/refuse.test/rules",
            data={"csrf": token, "account": "", "name": "taken", "text": "&x@example.test"},
        )
        for name, extra, message in (
            ("bad name!", {}, "invalid list address"),
            ("-x", {}, "invalid list address"),
            ("x" * 300, {}, "invalid list address"),
            ("postmaster", {}, "is an account"),
            ("taken", {}, "has its own rule .qmail-taken"),
            ("mod", {"moderated": "1"}, "a moderated list needs"),
            ("num", {"digest_every": "many"}, "not a number"),
            ("big", {"digest_every": "100000"}, "invalid list setting digest every"),
            ("own", {"owner": "not an address"}, "not of the form user@domain"),
        ):
            reply = await _create(client, token, "refuse.test", name, **extra)
            assert reply.status_code in (400, 409), (name, reply.status_code)
            assert message in reply.text, (name, reply.text[-600:])
        assert await _names(private_nats.url, "refuse.test") == []
        # an existing list is not made twice
        assert (await _create(client, token, "refuse.test", "one")).status_code == 303
        reply = await _create(client, token, "refuse.test", "one")
        assert reply.status_code == 400 and "list one@refuse.test exists" in reply.text


async def test_cr_lf_in_a_list_name_or_subscriber_is_refused(
    site: Admin, private_nats: NatsServer
) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "crlf-list.test"})
        reply = await _create(client, token, "crlf-list.test", "evil\r\nBcc: x@evil.test")
        assert reply.status_code == 400
        assert "contains a line break or control character" in reply.text
        assert (await _create(client, token, "crlf-list.test", "news")).status_code == 303
        for addresses, message in (
            ("a@example.test\r\nBcc: x@evil.test", "Bcc:.*not of the form user@domain"),
            ("a@example.test\x00", "line break or control character"),
            ("x" * 10_000 + "@example.test", "longer than 254 bytes"),
            ("", "no address given"),
        ):
            reply = await client.post(
                "/domains/crlf-list.test/lists/news/add",
                data={"csrf": token, "addresses": addresses},
            )
            assert reply.status_code == 400, addresses[:40]
            assert re.search(message, reply.text), (message, reply.text[-500:])
        # a subscriber field that is not multi-line: the owner
        reply = await _create(client, token, "crlf-list.test", "two", owner="a@b.test\r\nX: y")
        assert reply.status_code == 400 and "line break or control character" in reply.text
    subs = await _subscribers(private_nats.url, "news@crlf-list.test")
    assert subs.sub == ()


async def test_list_forms_without_the_csrf_token_are_refused(
    site: Admin, private_nats: NatsServer
) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "csrf-list.test"})
        assert (await _create(client, token, "csrf-list.test", "news")).status_code == 303
        for path, data in (
            ("/domains/csrf-list.test/lists", {"list": "other"}),
            ("/domains/csrf-list.test/lists/news/add", {"addresses": "a@example.test"}),
            ("/domains/csrf-list.test/lists/news/delete", {}),
        ):
            for forged in ({}, {"csrf": "forged"}):
                reply = await client.post(path, data={**data, **forged})
                assert reply.status_code == 403, path
                assert "security token" in reply.text
    assert await _names(private_nats.url, "csrf-list.test") == ["news"]
    assert (await _subscribers(private_nats.url, "news@csrf-list.test")).sub == ()


async def test_postmaster_of_a_sees_only_the_lists_of_a(
    site: Admin, private_nats: NatsServer
) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        for d in ("la.test", "lb.test"):
            await client.post("/domains", data={"csrf": token, "domain": d})
            assert (await _create(client, token, d, "news")).status_code == 303
        # a list whose name makes its key look like one of a longer domain's
        await client.post("/domains", data={"csrf": token, "domain": "x.la.test"})
    await admin.set_password(site.directory, Target("la.test", "postmaster"), PM_PASSWORD)
    async with site.client() as client:
        assert (await login(client, "postmaster@la.test", PM_PASSWORD)).status_code == 303
        token = await csrf(client)
        own = await client.get("/domains/la.test/lists")
        assert own.status_code == 200 and "news@la.test" in own.text
        missing = await client.get("/domains/nothere.test/lists")
        other = await client.get("/domains/lb.test/lists")
        assert other.status_code == missing.status_code == 404
        assert other.text.replace("lb.test", "X") == missing.text.replace("nothere.test", "X")
        assert (await client.get("/domains/lb.test/lists/news")).status_code == 404
        assert (await client.get("/domains/x.la.test/lists")).status_code == 404
        for path, data in (
            ("/domains/lb.test/lists", {"list": "mine"}),
            ("/domains/lb.test/lists/news/add", {"addresses": "m@evil.test"}),
            ("/domains/lb.test/lists/news/remove", {"addresses": "m@evil.test"}),
            ("/domains/lb.test/lists/news/delete", {}),
        ):
            reply = await client.post(path, data={"csrf": token, **data})
            assert reply.status_code == 404, path
        # its own domain's lists it may change
        reply = await client.post(
            "/domains/la.test/lists/news/add", data={"csrf": token, "addresses": "a@example.test"}
        )
        assert reply.status_code == 303
    assert await _names(private_nats.url, "lb.test") == ["news"]
    assert (await _subscribers(private_nats.url, "news@lb.test")).sub == ()
    assert (await _subscribers(private_nats.url, "news@la.test")).sub == ("a@example.test",)
