"""smtpd asks a real Rspamd (Debian's ``rspamd``) at the end of DATA (defences #12).

Rspamd runs on a loopback port with a minimal configuration of its own: none of its plugins,
no Redis, DNS pointed at a closed port. Its core knows GTUBE (reject); two rules of the test
score a marker word into ``add header`` and ``greylist``. A stopped Rspamd is a port nobody
listens on.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmesh.cli.natsd import NatsServer
from tests.e2e.cluster import client_program
from tests.integration.test_defences import (
    add_alice,
    close_clients,  # noqa: F401  (autouse)
    make_settings,
    plain,
    replicas,
)
from tests.integration.test_smtpd import DOMAIN, PASSWORD, Client, Stack
from tests.servers import free_ports

pytestmark = pytest.mark.integration

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SPAMMY = "qmesh-test-spammy"  # scores 7: add header
GREYLIST = "qmesh-test-greylist"  # scores 4.5: greylist
LATER = "451 4.7.1 message deferred by the content filter, try again later (#4.7.1)"
REJECTED = "554 5.7.1 message rejected as spam (#5.7.1)"
UNAVAILABLE = "451 4.7.1 content filter unavailable, try again later (#4.7.1)"

CONFIG = """\
options {{
  pidfile = "{d}/rspamd.pid";
  dbdir = "{d}/db";
  filters = "";
  dns {{ nameserver = ["127.0.0.1:{dns}"]; timeout = 0.1s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "{d}/rspamd.log"; level = "notice"; }}
worker "normal" {{ bind_socket = "127.0.0.1:{port}"; count = 1; }}
actions {{ reject = 15; add_header = 6; greylist = 4; }}
lua = "{d}/rules.lua";
"""
RULES = """\
local function marker(word, score)
  rspamd_config:register_symbol({
    name = 'QMESH_TEST_' .. string.upper(word),
    score = score,
    callback = function(task)
      return string.find(tostring(task:get_content()), 'qmesh-test-' .. word, 1, true) ~= nil
    end,
  })
end
marker('spammy', 7.0)
marker('greylist', 4.5)
"""


def up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    program = client_program("rspamd")
    d = tmp_path_factory.mktemp("rspamd")
    (d / "db").mkdir()
    port, dns = free_ports(2)
    (d / "rspamd.conf").write_text(CONFIG.format(d=d, port=port, dns=dns))
    (d / "rules.lua").write_text(RULES)
    command = [program, "-f", "-c", str(d / "rspamd.conf")]
    if os.geteuid() == 0:
        command.insert(2, "-i")  # workers may run as root here (a throw-away test server)
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # the TLD list is compiled at start (~20 s)
    while not up(url):
        assert proc.poll() is None, (d / "rspamd.log").read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, "rspamd did not start within 120 s"
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


async def message(c: Client, body: str, rcpt: str = f"alice@{DOMAIN}") -> str:
    assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
    assert await c.cmd(f"RCPT TO:<{rcpt}>") == "250 2.1.5 ok"
    assert await c.cmd("DATA") == "354 go ahead"
    return await c.cmd(f"From: joe@far.test\r\nSubject: test\r\n\r\n{body}\r\n.")


async def only_queued(stack: Stack) -> bytes:
    [body] = await stack.queued()
    return body


async def test_gtube_is_rejected_and_nothing_is_queued(
    private_nats: NatsServer, tmp_path: Path, rspamd: str
) -> None:
    settings = make_settings(private_nats.url, tmp_path, {"rspamd": rspamd})
    async with replicas(settings, 1) as (stack,):
        c = await Client.connect(stack.port())
        assert await message(c, GTUBE) == REJECTED
        assert await stack.queued() == []
        assert (await message(c, "a clean one after it")).startswith("250 2.0.0 ok ")


async def test_a_clean_message_is_accepted_with_x_spam_headers(
    private_nats: NatsServer, tmp_path: Path, rspamd: str
) -> None:
    settings = make_settings(private_nats.url, tmp_path, {"rspamd": rspamd})
    async with replicas(settings, 1) as (stack,):
        c = await Client.connect(stack.port())
        assert (await message(c, "Hello, see you at lunch.")).startswith("250 2.0.0 ok ")
        lines = (await only_queued(stack)).split(b"\n")
        assert lines[0].startswith(b"Received: ")  # smtpd's trace line first, then the scan
        assert lines[3] == b"X-Spam-Flag: NO"
        assert lines[4].startswith(b"X-Spam-Score: ") and lines[5] == b"X-Spam-Action: no action"
        assert b"Hello, see you at lunch." in lines


async def test_add_header_marks_the_message_for_junk_and_greylist_defers(
    private_nats: NatsServer, tmp_path: Path, rspamd: str
) -> None:
    settings = make_settings(private_nats.url, tmp_path, {"rspamd": rspamd})
    async with replicas(settings, 1) as (stack,):
        c = await Client.connect(stack.port())
        assert await message(c, GREYLIST) == LATER
        assert await stack.queued() == []
        assert (await message(c, SPAMMY)).startswith("250 2.0.0 ok ")
        body = await only_queued(stack)
        assert (
            b"\nX-Spam-Flag: YES\nX-Spam-Score: 7.00 / 15.00\nX-Spam-Action: add header\n" in body
        )


async def test_authenticated_submission_is_scanned_only_if_the_control_says_so(
    private_nats: NatsServer, tmp_path: Path, rspamd: str
) -> None:
    settings = make_settings(private_nats.url, tmp_path, {"rspamd": rspamd})
    async with replicas(settings, 1) as (stack,):
        await add_alice(settings)
        c = await Client.connect(stack.port("smtps"), tls=True)
        await c.cmd("EHLO client.test")
        assert (await c.cmd(plain(f"alice@{DOMAIN}", PASSWORD))).startswith("235 ")
        assert (await message(c, GTUBE, rcpt="bob@far.test")).startswith("250 2.0.0 ok ")
        assert b"X-Spam-" not in await only_queued(stack)
    (settings.control / "rspamdsubmission").write_text("1\n")
    async with replicas(settings, 1) as (stack,):
        d = await Client.connect(stack.port("smtps"), tls=True)
        await d.cmd("EHLO client.test")
        assert (await d.cmd(plain(f"alice@{DOMAIN}", PASSWORD))).startswith("235 ")
        assert await message(d, GTUBE, rcpt="bob@far.test") == REJECTED


async def test_rspamd_stopped_accepts_and_logs_or_defers_if_told(
    private_nats: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    [closed] = free_ports(1)  # where a stopped Rspamd was: connection refused
    settings = make_settings(private_nats.url, tmp_path, {"rspamd": f"http://127.0.0.1:{closed}"})
    async with replicas(settings, 1) as (stack,):
        c = await Client.connect(stack.port())
        with caplog.at_level(logging.WARNING, logger="services.smtpd.rspamd"):
            assert (await message(c, GTUBE)).startswith("250 2.0.0 ok ")
        [record] = [r for r in caplog.records if r.getMessage() == "smtpd.rspamd_unavailable"]
        assert getattr(record, "remote", None) == "127.0.0.1"
        assert b"X-Spam-" not in await only_queued(stack)
    (settings.control / "rspamdtempfail").write_text("1\n")
    async with replicas(settings, 1) as (stack,):
        d = await Client.connect(stack.port())
        assert await message(d, "later") == UNAVAILABLE
