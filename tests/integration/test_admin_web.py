"""admin's pages over real HTTP against the running service on a real nats-server (issue 14).

Each test has its own nats-server (the failed-login counters are per client address, and
every client here is 127.0.0.1). What is checked is what a browser or an attacker would see:
status codes, pages, cookies and headers, and what the directory holds afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.cli.natsd import NatsServer
from qmesh.contract.ids import new_queue_id
from qmesh.directory import admin
from qmesh.directory.namespaces import Namespaces, Target
from qmesh.directory.store import Directory
from qmesh.runtime.service import Running, start
from qmesh.runtime.settings import Settings
from services.admin.app import build

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "system admin secret"
PM_PASSWORD = "postmaster of a secret"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Admin:
    running: Running
    directory: Directory
    canonical: str
    url: str

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=20)


@pytest.fixture
async def site(private_nats: NatsServer, control_dir: Path, unique: str) -> AsyncIterator[Admin]:
    canonical = f"mx-{unique}.test"
    (control_dir / "me").write_text(f"{canonical}\n")
    (control_dir / "locals").write_text(f"{canonical}\n")
    # the login throttle of every listener (defences #12): blocked after 3 failures, short delays
    (control_dir / "authfailures").write_text("3\n")
    (control_dir / "authdelay").write_text("20\n")
    settings = Settings(
        nats_url=private_nats.url, control=control_dir, http_host="127.0.0.1", http_port=0
    )
    nc = await nats.connect(private_nats.url)
    directory = await Directory.open(nc.jetstream())
    namespaces = Namespaces.build(canonical, [canonical])
    await admin.add_domain(directory, canonical, namespaces=namespaces)
    await admin.set_password(directory, Target(canonical, "postmaster"), ADMIN_PASSWORD)
    running = await start(await build(settings), settings)
    conn = next(c for c in running.service.components if isinstance(c, NatsConnection))
    try:
        await asyncio.wait_for(conn.ready.wait(), 20)
        yield Admin(running, directory, canonical, f"http://127.0.0.1:{running.http_port}")
    finally:
        await running.stop()
        await nc.close()


async def login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    token = CSRF_RE.search(page.text)
    assert token is not None
    return await client.post(
        "/login", data={"csrf": token.group(1), "login": name, "password": password}
    )


async def csrf(client: httpx.AsyncClient, path: str = "/domains") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    token = CSRF_RE.search(page.text)
    assert token is not None
    return token.group(1)


@contextlib.asynccontextmanager
async def as_system(site: Admin) -> AsyncIterator[httpx.AsyncClient]:
    async with site.client() as client:
        reply = await login(client, f"postmaster@{site.canonical}", ADMIN_PASSWORD)
        assert reply.status_code == 303, reply.text
        yield client


async def test_health_metrics_and_pages_share_one_port(site: Admin) -> None:
    async with site.client() as client:
        assert (await client.get("/healthz")).json()["service"] == "admin"
        assert (await client.get("/readyz")).status_code == 200
        assert "qmesh_admin_logins_total" in (await client.get("/metrics")).text
        page = await client.get("/domains")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        page = await client.get("/login")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert "<script>" not in page.text  # no inline script: only /static/htmx.min.js
        htmx = await client.get("/static/htmx.min.js")
        assert htmx.status_code == 200 and "htmx" in htmx.text


async def test_admin_logs_in_creates_domain_and_account(site: Admin) -> None:
    async with site.client() as client:
        reply = await login(client, f"postmaster@{site.canonical}", ADMIN_PASSWORD)
        assert reply.status_code == 303
        cookie = reply.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        token = await csrf(client)
        reply = await client.post(
            "/domains", data={"csrf": token, "domain": "Example.TEST", "postmaster": ""}
        )
        assert reply.status_code == 303 and reply.headers["location"] == "/domains/example.test"
        reply = await client.post(
            "/domains/example.test/accounts",
            data={"csrf": token, "account": "Alice", "password": "alice secret"},
        )
        assert reply.status_code == 303
        page = await client.get("/domains/example.test")
        assert "alice@example.test" in page.text
        record = await site.directory.get_account("example.test", "alice")
        assert record is not None and record.verifier is not None
        assert "alice secret" not in record.verifier
        # quota, disable, a forward: each through the directory functions
        reply = await client.post(
            "/domains/example.test/accounts/alice/quota", data={"csrf": token, "quota": "1000000"}
        )
        assert reply.status_code == 303
        reply = await client.post(
            "/domains/example.test/rules",
            data={"csrf": token, "account": "", "name": "info", "text": "&alice@example.test"},
        )
        assert reply.status_code == 303
        domain = await site.directory.get_domain("example.test")
        assert domain is not None and domain.rules["info"] == "&alice@example.test\n"
        record = await site.directory.get_account("example.test", "alice")
        assert record is not None and record.quota == 1_000_000
        dns = await client.get("/domains/example.test/dns")
        assert f"example.test. IN MX 10 {site.canonical}." in dns.text
        queue = await client.get("/queue")
        assert queue.status_code == 200 and "messages in queue: 0" in queue.text
        flush = await client.post("/queue/flush", data={"csrf": token})
        assert flush.status_code == 503 and "no send is running" in flush.text
        # the new account's domain postmaster logs in and sees it
        reply = await client.post("/logout", data={"csrf": token})
        assert reply.status_code == 303
        assert (await client.get("/domains")).status_code == 303  # the session is gone


async def test_rule_syntax_refused_as_the_cli_refuses_it(site: Admin) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "r.test"})
        for text in ("&nobody", "../../etc/passwd", "\n&a@r.test"):
            reply = await client.post(
                "/domains/r.test/rules",
                data={"csrf": token, "account": "postmaster", "name": ".qmail", "text": text},
            )
            assert reply.status_code == 400, text
        record = await site.directory.get_account("r.test", "postmaster")
        assert record is not None and record.rules == {}


async def test_forms_without_the_csrf_token_are_refused(site: Admin) -> None:
    async with as_system(site) as client:
        for data in ({"domain": "csrf.test"}, {"domain": "csrf.test", "csrf": "forged"}):
            reply = await client.post("/domains", data=data)
            assert reply.status_code == 403
        assert await site.directory.get_domain("csrf.test") is None
    async with site.client() as client:  # the login form is protected too
        reply = await client.post(
            "/login", data={"login": f"postmaster@{site.canonical}", "password": ADMIN_PASSWORD}
        )
        assert reply.status_code == 403 and "set-cookie" not in reply.headers


async def test_postmaster_of_a_cannot_touch_b(site: Admin) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        for d in ("a.test", "b.test"):
            await client.post("/domains", data={"csrf": token, "domain": d})
    await admin.set_password(site.directory, Target("a.test", "postmaster"), PM_PASSWORD)
    async with site.client() as client:
        assert (await login(client, "postmaster@a.test", PM_PASSWORD)).status_code == 303
        listing = await client.get("/domains")
        assert "a.test" in listing.text and "b.test" not in listing.text
        token = await csrf(client)
        # another domain answers exactly as a domain that does not exist
        missing = await client.get("/domains/nothere.test")
        other = await client.get("/domains/b.test")
        assert other.status_code == missing.status_code == 404
        assert other.text.replace("b.test", "X") == missing.text.replace("nothere.test", "X")
        for path in ("/domains/B.Test/accounts/postmaster", "/domains/b.test/dns"):
            assert (await client.get(path)).status_code == 404, path
        for path, data in (
            ("/domains/b.test/accounts", {"account": "mallory", "password": "x" * 12}),
            ("/domains/b.test/accounts/postmaster/password", {"password": "taken over"}),
            ("/domains/b.test/rules", {"account": "", "name": "x", "text": "&m@evil.test"}),
            ("/domains/b.test/delete", {}),
        ):
            reply = await client.post(path, data={"csrf": token, **data})
            assert reply.status_code == 404, path
        for path in ("/domains", "/domains/a.test/delete"):  # domains are the system's
            reply = await client.post(path, data={"csrf": token, "domain": "c.test"})
            assert reply.status_code == 403, path
        assert (await client.get("/queue")).status_code == 403
        # its own domain it may change
        reply = await client.post(
            "/domains/a.test/accounts", data={"csrf": token, "account": "bob", "password": ""}
        )
        assert reply.status_code == 303
    assert await site.directory.get_account("b.test", "mallory") is None
    assert await site.directory.get_domain("c.test") is None
    b = await site.directory.get_domain("b.test")
    assert b is not None and "x" not in b.rules
    assert await site.directory.get_account("a.test", "bob") is not None


async def test_cr_lf_in_a_form_field_is_refused(site: Admin) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "crlf.test"})
        for field, value in (
            ("account", "eve\r\nSet-Cookie: x=1"),
            ("password", "pass\r\nword"),
            ("account", "eve\x00"),
        ):
            data = {"csrf": token, "account": "eve", "password": "good password", field: value}
            reply = await client.post("/domains/crlf.test/accounts", data=data)
            assert reply.status_code == 400
            assert "x=1" not in reply.headers.get("set-cookie", "")
        assert await site.directory.list_accounts("crlf.test") != []  # only the postmaster
        assert await site.directory.get_account("crlf.test", "eve") is None
    async with site.client() as client:
        page = await client.get("/login")
        match = CSRF_RE.search(page.text)
        assert match is not None
        reply = await client.post(
            "/login", data={"csrf": match.group(1), "login": "a\r\nb", "password": "x"}
        )
        assert reply.status_code == 400


async def test_brute_force_is_throttled_and_tells_nothing(site: Admin) -> None:
    async with site.client() as client:
        wrong = await login(client, f"postmaster@{site.canonical}", "wrong")
        unknown = await login(client, "nobody@nowhere.test", "wrong")
        ordinary = await login(client, f"nobody@{site.canonical}", "wrong")
        assert wrong.status_code == unknown.status_code == ordinary.status_code == 401
        assert _message(wrong.text) == _message(unknown.text) == _message(ordinary.text)
        # three failures from this client: now even the right password must wait
        right = await login(client, f"postmaster@{site.canonical}", ADMIN_PASSWORD)
        assert right.status_code == 429 and "Try again in" in right.text
        assert "retry-after" in right.headers
        assert "qmesh_admin=" not in right.headers.get("set-cookie", "")  # no session
        assert (await client.get("/domains")).status_code == 303  # not logged in


async def test_brute_force_is_blocked_and_the_owner_logs_in_from_elsewhere(site: Admin) -> None:
    """Defences #12: the pages count failed logins as every listener does (qmesh.limits)."""
    name = f"postmaster@{site.canonical}"
    async with site.client() as client:
        statuses = [(await login(client, name, f"guess{i}")).status_code for i in range(20)]
        assert statuses == [401] * 3 + [429] * 17
        assert (await login(client, name, ADMIN_PASSWORD)).status_code == 429
    elsewhere = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=site.url, timeout=20, transport=elsewhere) as client:
        reply = await login(client, name, ADMIN_PASSWORD)
        assert reply.status_code == 303 and reply.headers["location"] == "/domains"
        assert (await client.get("/domains")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'qmesh_admin_logins_total{result="throttled"}' in metrics


def _message(text: str) -> str:
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', text)
    assert found is not None
    return found.group(1)


async def test_markup_in_stored_text_is_shown_as_text(site: Admin) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "xss.test"})
        text = "# <script>alert(1)</script><img src=x onerror=alert(2)>\n&postmaster@xss.test"
        reply = await client.post(
            "/domains/xss.test/rules",
            data={"csrf": token, "account": "", "name": "evil", "text": text},
        )
        assert reply.status_code == 303
        page = await client.get("/domains/xss.test")
        assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        refused = await client.post(
            "/domains/xss.test/accounts",
            data={"csrf": token, "account": "<b>bold</b>", "password": ""},
        )
        assert refused.status_code == 400 and "<b>bold</b>" not in refused.text


async def test_a_disabled_administrator_loses_its_session(site: Admin) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "gone.test"})
    await admin.set_password(site.directory, Target("gone.test", "postmaster"), PM_PASSWORD)
    async with site.client() as client:
        assert (await login(client, "postmaster@gone.test", PM_PASSWORD)).status_code == 303
        assert (await client.get("/domains/gone.test")).status_code == 200
        await admin.set_enabled(site.directory, Target("gone.test", "postmaster"), False)
        assert (await client.get("/domains/gone.test")).status_code == 303  # to /login


async def test_queue_show_refuses_what_is_not_a_queue_id(site: Admin) -> None:
    async with as_system(site) as client:
        for qid in ("..%2F..%2Fetc", "1.zz", new_queue_id()):
            reply = await client.get(f"/queue/{qid}")
            assert reply.status_code == 404, qid


async def test_hostile_quotas_are_refused(site: Admin) -> None:
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "q.test"})
        path = "/domains/q.test/accounts/postmaster/quota"
        for quota in ("²", "9" * 5000, "-1", "0", "1e9", " 5", str(2**60)):
            reply = await client.post(path, data={"csrf": token, "quota": quota})
            assert reply.status_code == 400, quota
        assert (await client.post(path, data={"csrf": token, "quota": "none"})).status_code == 303


async def test_vacation_reply_is_set_and_refused_as_the_cli_does(site: Admin) -> None:
    """Issue 14: the account page's vacation form goes through qmesh.directory.admin's
    vacation_reply and set_vacation, as ``qmesh user vacation`` does."""
    async with as_system(site) as client:
        token = await csrf(client)
        await client.post("/domains", data={"csrf": token, "domain": "away.test"})
        await client.post(
            "/domains/away.test/accounts", data={"csrf": token, "account": "bob", "password": ""}
        )
        path = "/domains/away.test/accounts/bob/vacation"
        data = {"csrf": token, "subject": "Away", "text": "Gone.\r\nBack soon.", "days": "5"}
        reply = await client.post(path, data=data)
        assert reply.status_code == 303
        page = await client.get("/domains/away.test/accounts/bob")
        assert "Vacation reply <small>on</small>" in page.text and "Back soon." in page.text
        bob = await site.directory.get_account("away.test", "bob")
        assert bob is not None and bob.vacation is not None
        assert (bob.vacation.text, bob.vacation.days) == ("Gone.\nBack soon.\n", 5)
        for data, status, reason in (
            ({"subject": "Away\r\nBcc: x@evil.test", "text": "t"}, 400, "control character"),
            ({"subject": "Away", "text": "t", "days": "99"}, 400, "invalid vacation days"),
            ({"subject": "Away", "text": "t", "days": "x"}, 400, "invalid vacation days"),
            ({"subject": "", "text": "t"}, 400, "invalid vacation subject"),
            ({"subject": "Away", "text": "nul\x00"}, 400, "control character"),
        ):
            reply = await client.post(path, data={"csrf": token, **data})
            assert reply.status_code == status and reason in reply.text, (data, reply.text[-400:])
        assert (await client.post(path, data={"subject": "x", "text": "y"})).status_code == 403
        assert (await client.post(path, data={"csrf": token, "off": "1"})).status_code == 303
    bob = await site.directory.get_account("away.test", "bob")
    assert bob is not None and bob.vacation is None
