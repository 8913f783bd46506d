"""admin's pages in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver (issue 14).

The system administrator logs in, creates a domain and an account, and looks at the account,
the DNS records, the queue and the domain's mailing lists (creating one, subscribing two); a
screenshot of every page is kept under ``test-artifacts/admin-browser/``
(``$QMESH_TEST_ARTIFACTS`` to put them elsewhere), one of them at a phone's 390 px width.
admin runs as its own process (``python -m services.admin``) on a real nats-server with the
NATS user and permissions of the chart. Chromium reports any Content-Security-Policy
violation in its console log; there must be none.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmesh.bus.provision import provision
from qmesh.cli.connect import nats_session
from qmesh.cli.natsd import start_nats_server
from qmesh.cli.natsusers import password_file, user_name, write_server_config
from qmesh.directory import admin
from qmesh.directory.namespaces import Namespaces, Target
from qmesh.directory.store import Directory
from tests.servers import free_ports

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
PASSWORD = "browser admin secret"
CANONICAL = "mail.example.test"

webdriver = pytest.importorskip("selenium.webdriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed and could not be "
        "(deploy/ci/system-packages.sh installs them as root with apt-get)",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.service import Service as ChromeService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def artifacts() -> Path:
    base = Path(os.environ.get("QMESH_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    folder = base / "admin-browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def admin_url(tmp_path: Path, control_dir: Path) -> Iterator[str]:
    (control_dir / "me").write_text(f"{CANONICAL}\n")
    (control_dir / "locals").write_text(f"{CANONICAL}\n")
    data = tmp_path / "data"
    config = write_server_config(data, tmp_path / "nats" / "users.conf")
    server = start_nats_server(tmp_path / "nats", config=config)
    env_admin = {
        "QMESH_NATS_URL": server.url,
        "QMESH_NATS_USER": user_name("admin"),
        "QMESH_NATS_PASSWORD_FILE": str(password_file(data, "admin")),
    }

    async def setup() -> None:
        async with nats_session(env_admin, "admin") as nc:
            await provision(nc.jetstream(), ())
            directory = await Directory.open(nc.jetstream())
            await admin.add_domain(
                directory, CANONICAL, namespaces=Namespaces.build(CANONICAL, [CANONICAL])
            )
            await admin.set_password(directory, Target(CANONICAL, "postmaster"), PASSWORD)

    asyncio.run(setup())
    (port,) = free_ports(1)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("QMESH_")},
        "QMESH_NATS_URL": server.url,
        "QMESH_NATS_USER": user_name("webadmin"),
        "QMESH_NATS_PASSWORD_FILE": str(password_file(data, "webadmin")),
        "QMESH_CONTROL": str(control_dir),
        "QMESH_HTTP_HOST": "127.0.0.1",
        "QMESH_HTTP_PORT": str(port),
    }
    log = (tmp_path / "admin.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.admin"], env=env, stdout=log, stderr=log, cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((tmp_path / "admin.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:  # type: ignore[name-defined]
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_admin_creates_a_domain_and_an_account_in_chromium(admin_url: str, browser) -> None:
    shots = artifacts()
    wait = WebDriverWait(browser, 20)

    def shot(name: str) -> None:
        assert browser.save_screenshot(str(shots / f"{name}.png"))

    browser.get(f"{admin_url}/domains")
    wait.until(ec.presence_of_element_located((By.ID, "login")))
    shot("01-login")
    browser.find_element(By.ID, "login").send_keys(f"postmaster@{CANONICAL}")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-submit").click()
    wait.until(ec.presence_of_element_located((By.ID, "domain-add")))
    assert CANONICAL in browser.find_element(By.ID, "domains").text
    shot("02-domains")

    browser.find_element(By.ID, "new-domain").send_keys("shop.example.test")
    browser.find_element(By.CSS_SELECTOR, "#domain-add button").click()
    wait.until(ec.presence_of_element_located((By.ID, "account-add")))
    assert "shop.example.test" in browser.find_element(By.TAG_NAME, "h1").text
    shot("03-domain")

    browser.find_element(By.ID, "new-account").send_keys("alice")
    browser.find_element(By.ID, "new-password").send_keys("alice in the shop")
    browser.find_element(By.CSS_SELECTOR, "#account-add button").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "alice@shop.example.test"))
    shot("04-account")

    # a rule the CLI refuses is refused here, and the page says why (htmx swaps the 400 in)
    browser.find_element(By.CSS_SELECTOR, "form.rule-set input[name=name]").send_keys(".qmail")
    browser.find_element(By.CSS_SELECTOR, "form.rule-set textarea").send_keys("&nobody")
    browser.find_element(By.CSS_SELECTOR, "form.rule-set button").click()
    message = wait.until(ec.presence_of_element_located((By.ID, "message")))
    assert "nobody" in message.text
    shot("04b-rule-refused")

    browser.get(f"{admin_url}/domains/shop.example.test")
    wait.until(ec.presence_of_element_located((By.ID, "accounts")))
    assert "alice@shop.example.test" in browser.find_element(By.ID, "accounts").text
    shot("05-domain-with-account")

    browser.get(f"{admin_url}/domains/shop.example.test/dns")
    zone = wait.until(ec.presence_of_element_located((By.ID, "zone")))
    assert f"shop.example.test. IN MX 10 {CANONICAL}." in zone.text
    shot("06-dns")

    browser.get(f"{admin_url}/queue")
    stat = wait.until(ec.presence_of_element_located((By.ID, "stat")))
    assert "messages in queue: 0" in stat.text
    shot("07-queue")

    # the domain's mailing lists (issue 15): create one with the CLI's options, subscribe two
    browser.get(f"{admin_url}/domains/shop.example.test")
    wait.until(ec.element_to_be_clickable((By.ID, "lists-link"))).click()
    wait.until(ec.presence_of_element_located((By.ID, "list-create")))
    browser.find_element(By.ID, "new-list").send_keys("news")
    for flag in ("archive", "digest"):
        browser.find_element(By.CSS_SELECTOR, f"#list-create input[name={flag}]").click()
    browser.find_element(By.CSS_SELECTOR, "#list-create input[name=prefix]").send_keys("[news]")
    browser.find_element(By.CSS_SELECTOR, "#list-create button").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "news@shop.example.test"))
    browser.find_element(By.ID, "new-subscribers").send_keys(
        "alice@shop.example.test\nbob@elsewhere.test"
    )
    browser.find_element(By.CSS_SELECTOR, "#subscriber-add button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "subscribers"), "bob@elsewhere.test"))
    settings = browser.find_element(By.ID, "list-settings").text
    assert "flags: digest archive" in settings and "subscribers: 2" in settings
    shot("07b-list")
    browser.get(f"{admin_url}/domains/shop.example.test/lists")
    lists = wait.until(ec.presence_of_element_located((By.ID, "lists")))
    assert "news@shop.example.test" in lists.text
    shot("07c-lists")

    browser.set_window_size(390, 844)  # a phone
    browser.get(f"{admin_url}/domains/shop.example.test")
    wait.until(ec.presence_of_element_located((By.ID, "accounts")))
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    shot("08-domain-390px")

    htmx = browser.execute_script("return typeof window.htmx")
    assert htmx == "object"  # the vendored htmx loaded under the strict CSP
    violations = [
        e["message"]
        for e in browser.get_log("browser")
        if "Content Security Policy" in e["message"] or "Refused to" in e["message"]
    ]
    assert violations == []
    for name in (
        "01-login",
        "02-domains",
        "03-domain",
        "04-account",
        "07b-list",
        "08-domain-390px",
    ):
        assert (shots / f"{name}.png").stat().st_size > 1000
