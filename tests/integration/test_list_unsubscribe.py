"""RFC 8058 one-click list unsubscribe served by admin, over real HTTP against the running
service on a real nats-server (issue #15): a POST with ``List-Unsubscribe=One-Click`` and a
valid token unsubscribes with no login and no CSRF token; a GET never does; a forged, expired
or other list's token, or a POST that does not ask, is refused with a clear page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.kv import KeyValue

from qmesh.bus.connection import NatsConnection
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.lists import oneclick, state
from qmesh.runtime.service import start
from qmesh.runtime.settings import Settings
from services.admin.app import build

pytestmark = pytest.mark.integration

LIST = "talk@lists.test"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@dataclass
class Site:
    url: str
    kv: KeyValue
    key: bytes

    def token(self, address: str, list_address: str = LIST, now: float | None = None) -> str:
        return oneclick.make(self.key, list_address, address, time.time() if now is None else now)

    async def subscribed(self, which: str = "sub") -> tuple[str, ...]:
        subs = await state.subscribers(self.kv, LIST)
        return subs.sub if which == "sub" else subs.digest


@pytest.fixture
async def site(private_nats: NatsServer, control_dir: Path) -> AsyncIterator[Site]:
    (control_dir / "me").write_text("mx.lists.test\n")
    settings = Settings(
        nats_url=private_nats.url, control=control_dir, http_host="127.0.0.1", http_port=0
    )
    nc = await nats.connect(private_nats.url)
    kv = await nc.jetstream().key_value(subjects.KV_LISTS)
    key = await state.cookie_key(kv)
    await state.subscribe_many(kv, LIST, ["joe@far.test", "ann@far.test"])
    await state.subscribe(kv, LIST, "joe@far.test", "digest")
    running = await start(await build(settings), settings)
    conn = next(c for c in running.service.components if isinstance(c, NatsConnection))
    try:
        await asyncio.wait_for(conn.ready.wait(), 20)
        yield Site(f"http://127.0.0.1:{running.http_port}", kv, key)
    finally:
        await running.stop()
        await nc.close()


async def test_one_click_post_unsubscribes_without_login_and_get_never_does(site: Site) -> None:
    token = site.token("joe@far.test")
    async with httpx.AsyncClient(base_url=site.url, timeout=20) as client:
        page = await client.get(f"/unsubscribe/{token}")
        assert page.status_code == 200
        assert "Unsubscribe joe@far.test from talk@lists.test?" in page.text
        assert 'name="List-Unsubscribe" value="One-Click"' in page.text
        assert await site.subscribed() == ("joe@far.test", "ann@far.test")  # GET: nothing
        done = await client.post(f"/unsubscribe/{token}", data=ONE_CLICK)  # no cookie, no CSRF
        assert done.status_code == 200, done.text
        assert "joe@far.test is no longer subscribed to talk@lists.test" in done.text
    assert await site.subscribed() == ("ann@far.test",)
    assert await site.subscribed("digest") == ()  # the digest too, as ezmlm-manage does


async def test_one_click_as_multipart_form_data(site: Site) -> None:
    """RFC 8058 3.1: the body may come as multipart/form-data."""
    async with httpx.AsyncClient(base_url=site.url, timeout=20) as client:
        done = await client.post(
            f"/unsubscribe/{site.token('ann@far.test')}",
            files={"List-Unsubscribe": (None, "One-Click")},
        )
    assert done.status_code == 200, done.text
    assert await site.subscribed() == ("joe@far.test",)


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("forged", "not valid for this list and address"),
        ("other-list", "not valid for this list and address"),
        ("expired", "has expired"),
        ("garbage", "not valid (it may have been cut short)"),
        ("long", "not valid (it may have been cut short)"),
        ("not-asked", "did not ask to unsubscribe"),
    ],
)
async def test_bad_tokens_and_requests_are_refused_clearly(site: Site, how: str, why: str) -> None:
    good = site.token("joe@far.test")
    body: dict[str, str] = ONE_CLICK
    if how == "forged":  # the address changed: the MAC no longer fits
        token = ".".join(
            [good.split(".")[0], site.token("ann@far.test").split(".")[1], *good.split(".")[2:]]
        )
    elif how == "other-list":  # a valid token of another list, its list part swapped in
        other = site.token("joe@far.test", "other@lists.test").split(".")
        token = ".".join([other[0], *good.split(".")[1:]])
    elif how == "expired":
        token = site.token("joe@far.test", now=time.time() - oneclick.LIFETIME - 10)
    elif how == "garbage":
        token = "a.b%0D%0AX-Injected:%201.%C3%A9.d"  # CR LF and UTF-8, percent-encoded
    elif how == "long":
        token = "A" * 10_000
    else:
        token, body = good, {"List-Unsubscribe": "One-Click-Please"}
    async with httpx.AsyncClient(base_url=site.url, timeout=20) as client:
        refused = await client.post(f"/unsubscribe/{token}", data=body)
        shown = await client.get(f"/unsubscribe/{token}")
    assert refused.status_code == 400
    assert why in refused.text
    assert "X-Injected" not in refused.headers
    if how != "not-asked":
        assert shown.status_code == 400 and why in shown.text
    assert await site.subscribed() == ("joe@far.test", "ann@far.test")
