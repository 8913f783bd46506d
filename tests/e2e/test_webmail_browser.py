"""webmail in a real browser, the whole way: Debian's Chromium, headless, through Selenium and
Debian's chromedriver, against ``qmesh up`` on SeaweedFS (issue 14).

The system administrator creates a domain and an account in admin's pages; a message arrives
by SMTP; the account reads it in webmail and replies with an attachment; the reply leaves by
remote and reaches the SMTP sink. A screenshot of each page is kept under
``test-artifacts/webmail-browser/`` (``$QMESH_TEST_ARTIFACTS`` to put them elsewhere), one at a
phone's 390 px width. Chromium reports any Content-Security-Policy violation in its console
log; there must be none.
"""

from __future__ import annotations

import email
import email.policy
import os
import smtplib
import time
import urllib.request
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, start_cluster
from tests.e2e.conftest import Sink, profile_controls
from tests.e2e.test_admin_browser import ROOT, browser  # noqa: F401 - the Chromium fixture
from tests.servers import S3Server

pytestmark = pytest.mark.e2e

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ADMIN_PASSWORD = "system admin secret"
ALICE = "alice@shop.example.test"
ALICE_PASSWORD = "alice in the shop"


def artifacts() -> Path:
    base = Path(os.environ.get("QMESH_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    folder = base / "webmail-browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def cluster(tmp_path: Path, sink: Sink, s3_server: S3Server) -> Iterator[Cluster]:
    c = start_cluster(tmp_path / "site", profile_controls(sink.port), s3=s3_server)
    try:
        done = c.cli("user", "passwd", "postmaster", "--password-stdin", stdin=ADMIN_PASSWORD)
        assert done.returncode == 0, done.stderr
        yield c
    finally:
        c.stop()


def test_mail_read_and_answered_in_webmail(cluster: Cluster, sink: Sink, browser, tmp_path) -> None:  # noqa: F811
    admin_url = f"http://127.0.0.1:{cluster.env['QMESH_ADMIN_PORT']}"
    webmail_url = f"http://127.0.0.1:{cluster.env['QMESH_WEBMAIL_PORT']}"
    wait_for(lambda: ready(admin_url) and ready(webmail_url), what="admin and webmail ready")
    printed = f"qmesh: webmail {webmail_url}/"
    wait_for(lambda: printed in cluster.output.read_text(), what="qmesh up printing webmail's URL")
    shots = artifacts()
    wait = WebDriverWait(browser, 30)

    def shot(name: str) -> None:
        assert browser.save_screenshot(str(shots / f"{name}.png"))

    # the administrator makes the domain and the account in admin's pages
    browser.get(f"{admin_url}/domains")
    wait.until(ec.presence_of_element_located((By.ID, "login")))
    browser.find_element(By.ID, "login").send_keys("postmaster@mx.example.test")
    browser.find_element(By.ID, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.ID, "login-submit").click()
    wait.until(ec.presence_of_element_located((By.ID, "domain-add")))
    browser.find_element(By.ID, "new-domain").send_keys("shop.example.test")
    browser.find_element(By.CSS_SELECTOR, "#domain-add button").click()
    wait.until(ec.presence_of_element_located((By.ID, "account-add")))
    browser.find_element(By.ID, "new-account").send_keys("alice")
    browser.find_element(By.ID, "new-password").send_keys(ALICE_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#account-add button").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), ALICE))
    shot("01-admin-account")

    # a message arrives by SMTP
    incoming = EmailMessage()
    incoming["From"] = "Bob <bob@sink.test>"
    incoming["To"] = ALICE
    incoming["Subject"] = "Offer for the shop"
    incoming["Message-ID"] = "<offer-1@sink.test>"
    incoming.set_content("Hello Alice,\n\nshall we deliver on Monday?\n\nBob\n")
    incoming.add_alternative(
        "<p>Hello Alice,</p><p>shall we deliver on <b>Monday</b>?</p>"
        '<img src="https://tracker.sink.test/p.gif"><script>alert(1)</script>',
        subtype="html",
    )
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30) as smtp:
        smtp.send_message(incoming, from_addr="bob@sink.test", to_addrs=[ALICE])

    # alice logs in to webmail and finds it
    browser.get(f"{webmail_url}/")
    wait.until(ec.presence_of_element_located((By.ID, "login")))
    shot("02-webmail-login")
    browser.find_element(By.ID, "login").send_keys(ALICE)
    browser.find_element(By.ID, "password").send_keys(ALICE_PASSWORD)
    browser.find_element(By.ID, "login-submit").click()
    wait.until(ec.presence_of_element_located((By.ID, "search")))

    def arrived() -> bool:
        browser.get(f"{webmail_url}/mail?f=INBOX")
        return "Offer for the shop" in browser.page_source

    wait_for(arrived, what="the message in the inbox")
    shot("03-inbox")
    # the star is flagged in place by htmx: the row is swapped, the page stays
    browser.execute_script("window.__stayed = true")
    browser.find_element(By.CSS_SELECTOR, "td.flag button").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "td.flag button"), "★"))
    assert browser.execute_script("return window.__stayed") is True

    browser.find_element(By.LINK_TEXT, "Offer for the shop").click()
    body = wait.until(ec.presence_of_element_located((By.ID, "body")))
    assert "Monday" in body.text
    assert browser.title != "pwned"
    assert browser.find_element(By.ID, "images-blocked").is_displayed()
    shot("04-message")

    # reply with an attachment
    attachment = tmp_path / "delivery-plan.txt"
    attachment.write_text("Monday 9:00, gate 2\n")
    browser.find_element(By.ID, "reply").click()
    text = wait.until(ec.presence_of_element_located((By.ID, "text")))
    assert browser.find_element(By.ID, "to").get_attribute("value") == "Bob <bob@sink.test>"
    text.send_keys("Monday suits us; the plan is attached.")
    browser.find_element(By.ID, "attachment").send_keys(str(attachment))
    shot("05-reply")
    browser.find_element(By.ID, "send").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Sent"))
    assert "Re: Offer for the shop" in browser.page_source
    shot("06-sent")

    # the reply reaches the SMTP sink, from alice, with its attachment
    wait_for(lambda: bool(sink.messages), what="the reply at the sink")
    (received,) = sink.messages
    assert received.sender == ALICE and received.recipients == ["bob@sink.test"]
    reply = email.message_from_bytes(received.data, policy=email.policy.default)
    assert reply["From"] == ALICE and reply["In-Reply-To"] == "<offer-1@sink.test>"
    assert reply["Subject"] == "Re: Offer for the shop"
    (part,) = list(reply.iter_attachments())
    assert part.get_filename() == "delivery-plan.txt"
    assert part.get_content() == "Monday 9:00, gate 2\n"

    # the inbox shows the message answered; on a phone too
    browser.get(f"{webmail_url}/mail?f=INBOX")
    wait.until(ec.presence_of_element_located((By.ID, "search")))
    assert "answered" in browser.page_source
    shot("07-inbox-answered")
    browser.set_window_size(390, 844)
    browser.get(f"{webmail_url}/mail?f=INBOX")
    wait.until(ec.presence_of_element_located((By.ID, "search")))
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the inbox scrolls sideways on a phone ({width} px)"
    shot("08-inbox-390px")
    browser.find_element(By.LINK_TEXT, "Offer for the shop").click()
    wait.until(ec.presence_of_element_located((By.ID, "body")))
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the message scrolls sideways on a phone ({width} px)"
    shot("09-message-390px")

    assert browser.execute_script("return typeof window.htmx") == "object"
    violations = [
        e["message"]
        for e in browser.get_log("browser")
        if "Content Security Policy" in e["message"] or "Refused to" in e["message"]
    ]
    assert violations == []
    for name in ("02-webmail-login", "03-inbox", "04-message", "05-reply", "08-inbox-390px"):
        assert (shots / f"{name}.png").stat().st_size > 1000
