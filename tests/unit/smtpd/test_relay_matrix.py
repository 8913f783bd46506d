"""No control combination is an open relay (SMTPD-42, SMTPD-43, QMTP-13; hardening #1).

Every combination of the routing and relay controls that docs/controls.md describes (locals,
rcpthosts, percenthack, envnoathost, virtualdomains, relayclients, directory domains) is
loaded from real control files, and hostile recipients are offered over SMTP and QMTP by a
client that is neither a relay client nor logged in. Whatever smtpd accepts is then routed by
send's own preprocessing (SEND-10..16): it must end on the local channel, never remote.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from qmesh.contract.events import Origin, Todo, Verdict
from qmesh.contract.ids import QueueId
from qmesh.control import load_controls
from qmesh.control.values import Controls
from services.send.config import send_config
from services.send.plan import preprocess
from services.smtpd.config import SmtpdConfig, smtpd_config
from services.smtpd.qmtp import Package, decide
from services.smtpd.session import Client, Session
from tests.unit.smtpd.test_session import FakeQueue

ME = "mx.example.test"
CLIENT = "192.0.2.9"  # never inside relayclients below

LOCALS = {"default": None, "two": f"{ME}\nexample.test"}
RCPTHOSTS = {
    "missing": None,
    "hosted": f"{ME}\nexample.test\nvirt.example.test\nhosted.test",
    "subdomains": f"{ME}\n.example.test\nvirt.example.test\nhosted.test",
    "backup-mx": f"{ME}\nexample.test\nother.example",  # a domain relayed for, not hosted
}
PERCENTHACK = {
    "none": None,
    "me": ME,
    "all": f"{ME}\nexample.test\nvirt.example.test\nhosted.test\nother.example",
}
ENVNOATHOST = {"me": None, "local": "example.test", "virtual": "virt.example.test"}
ENVNOATHOST["remote"] = "other.example"
VIRTUALDOMAINS = {
    "none": None,
    "virtual": "virt.example.test:carol",
    "exceptions": "virt.example.test:carol\nuser@virt.example.test:\nex.virt.example.test:\n"
    ".virt.example.test:carol",
    "catch-all": "virt.example.test:carol\n:catchall\nother.example:",
}
DIRECTORY = {"empty": frozenset[str](), "hosted": frozenset({"hosted.test"})}

# As a client writes them on the wire: SMTP paths (quoted forms unquoted by SMTPD-31).
HOSTILE_SMTP = [
    "<user%other.example>",
    '<"user%other.example">',
    "<user%other.example%mx.example.test>",
    "<user%other.example@mx.example.test>",
    '<"user%other.example"@mx.example.test>',
    "<user%other.example@example.test>",
    "<user%other.example@MX.EXAMPLE.TEST>",
    "<user%other.example@virt.example.test>",
    "<user%other.example@hosted.test>",
    "<user%other.example@[127.0.0.1]>",
    "<user%other.example@[192.0.2.25]>",
    "<user%other.example@ex.virt.example.test>",
    "<other.example!user>",
    "<other.example!user@mx.example.test>",
    "<@mx.example.test:user@other.example>",
    "<@mx.example.test,@example.test:user%other.example>",
    '<"user@other.example">',
    '<"user@other.example"@mx.example.test>',
    "<user\\@other.example@mx.example.test>",
    "<user@other.example>",
    "<user@OTHER.example>",
    "<user@other.example.>",
    "<user@virt.example.test>",
    "<user@ex.virt.example.test>",
    "<user@a.ex.virt.example.test>",
    "<postmaster>",
    "<alice>",
    "<alice@example.test>",
]
# QMTP recipients are raw addresses: no quoting, no source routes are removed.
HOSTILE_QMTP = [
    "user%other.example",
    '"user%other.example"',
    "user%other.example%mx.example.test",
    "user%other.example@mx.example.test",
    "user%other.example@example.test",
    "user%other.example@virt.example.test",
    "user%other.example@hosted.test",
    "user%other.example@[127.0.0.1]",
    "other.example!user",
    "@mx.example.test:user@other.example",
    "@mx.example.test:user%other.example",
    "user@other.example@mx.example.test",
    "user@other.example",
    "user@virt.example.test",
    "user@ex.virt.example.test",
    "postmaster",
]


class EveryAddress:
    """A recipient check that finds every local address, so only relay control decides."""

    async def verify(self, recipient: str, namespace: str) -> Verdict:
        return "valid"


def _controls(directory: Path, **files: str | None) -> Controls:
    directory.mkdir()
    (directory / "me").write_text(ME + "\n")
    (directory / "relayclients").write_text("10.0.0.0/8\n127.0.0.2/32\n")
    (directory / "ipme").write_text("127.0.0.1\n192.0.2.25\n")
    for name, text in files.items():
        if text is not None:
            (directory / name).write_text(text + "\n")
    return load_controls(directory, {})


def _combinations() -> list[tuple[str, str, str, str, str]]:
    return list(itertools.product(LOCALS, RCPTHOSTS, PERCENTHACK, ENVNOATHOST, VIRTUALDOMAINS))


def _routes(controls: Controls, recipients: list[str], domains: frozenset[str]) -> list[str]:
    """The channel send gives each recipient (SEND-01's preprocessing)."""
    todo = Todo(
        id=QueueId("1732510000000.0123456789abcdef"),
        qp=1,
        envelope={"sender": "joe@far.test", "recipients": tuple(recipients)},
        origin=Origin(kind="network", client_ip=CLIENT),
        size=1,
        queued_at=0.0,
    )
    state = preprocess(todo, send_config(controls).rules, domains, now=0.0)
    return [r.channel for r in state.recipients]


async def _over_smtp(config: SmtpdConfig, domains: frozenset[str], path: str) -> list[str]:
    """The recipients queued after ``RCPT TO:path`` (and a local one, so DATA has one)."""
    queue = FakeQueue()
    session = Session(
        config,
        Client(CLIENT, "smtp"),
        queue=queue,
        rcptcheck=EveryAddress(),
        domains=lambda: domains,
    )
    assert (await session.line(b"MAIL FROM:<joe@far.test>\r\n")).reply == "250 2.1.0 ok"
    await session.line(b"RCPT TO:<alice@" + ME.encode() + b">\r\n")
    reply = (await session.line(f"RCPT TO:{path}\r\n".encode())).reply or ""
    assert reply[:1] in ("2", "5"), reply
    assert (await session.line(b"DATA\r\n")).reply == "354 go ahead"
    reader = session.data_reader()
    reader.feed(b"Subject: relay?\r\n\r\n.\r\n")
    await session.finish_data(reader)
    [(_, recipients, _, _)] = queue.queued
    return recipients


async def _over_qmtp(config: SmtpdConfig, domains: frozenset[str], raw: str) -> list[str]:
    queue = FakeQueue()
    package = Package(b"\nSubject: relay?\n\n", 18, b"joe@far.test", [raw.encode()])
    await decide(
        package,
        config=config,
        client_ip=CLIENT,
        relayclient=config.relayclient(CLIENT),
        domains=lambda: domains,
        rcptcheck=EveryAddress(),
        queue=queue,
    )
    return [r for _, recipients, _, _ in queue.queued for r in recipients]


@pytest.mark.parametrize("directory_name", list(DIRECTORY))
async def test_smtpd_42_43_no_combination_relays_for_a_stranger(
    tmp_path: Path, directory_name: str
) -> None:
    """hardening #1: accepted means local, for every combination and hostile recipient."""
    domains = DIRECTORY[directory_name]
    relayed: list[str] = []
    for n, (loc, rcpt, pct, noat, virt) in enumerate(_combinations()):
        controls = _controls(
            tmp_path / str(n),
            locals=LOCALS[loc],
            rcpthosts=RCPTHOSTS[rcpt],
            percenthack=PERCENTHACK[pct],
            envnoathost=ENVNOATHOST[noat],
            virtualdomains=VIRTUALDOMAINS[virt],
        )
        config = smtpd_config(controls)
        assert config.relayclient(CLIENT) is None
        combination = f"locals={loc} rcpthosts={rcpt} percenthack={pct} envnoathost={noat} "
        combination += f"virtualdomains={virt} directory={directory_name}"
        for path in HOSTILE_SMTP:
            queued = await _over_smtp(config, domains, path)
            for address, channel in zip(queued, _routes(controls, queued, domains), strict=True):
                if channel != "local":
                    relayed.append(f"SMTP {path} -> {address} with {combination}")
        for raw in HOSTILE_QMTP:
            queued = await _over_qmtp(config, domains, raw)
            for address, channel in zip(queued, _routes(controls, queued, domains), strict=True):
                if channel != "local":
                    relayed.append(f"QMTP {raw} -> {address} with {combination}")
    assert relayed == []


@pytest.mark.parametrize("path", ["<user%other.example>", '<"user%other.example">'])
async def test_smtpd_43_percent_hack_without_at_is_refused(tmp_path: Path, path: str) -> None:
    """hardening #1: SEND-10 then SEND-11 make ``user%other.example`` remote: refused."""
    controls = _controls(tmp_path / "c", rcpthosts=ME, percenthack=ME)
    session = Session(
        smtpd_config(controls),
        Client(CLIENT, "smtp"),
        queue=FakeQueue(),
        rcptcheck=EveryAddress(),
        domains=frozenset,
    )
    await session.line(b"MAIL FROM:<joe@far.test>\r\n")
    step = await session.line(f"RCPT TO:{path}\r\n".encode())
    assert step.reply == "553 5.7.1 sorry, relaying denied"
    step = await session.line(b"RCPT TO:<postmaster>\r\n")
    assert step.reply == "250 2.1.5 ok"  # RFC 5321's <Postmaster> still reaches us (SMTPD-42)


async def test_qmtp_13_percent_hack_without_at_is_refused(tmp_path: Path) -> None:
    controls = _controls(tmp_path / "c", rcpthosts=ME, percenthack=ME)
    verdicts, queued = await decide(
        Package(b"\nSubject: x\n\n", 13, b"joe@far.test", [b"user%other.example"]),
        config=smtpd_config(controls),
        client_ip=CLIENT,
        relayclient=None,
        domains=frozenset,
        rcptcheck=EveryAddress(),
        queue=FakeQueue(),
    )
    assert ([v.qmtp() for v in verdicts], queued) == ([b"Dsorry, relaying denied (#5.7.1)"], None)


async def test_smtpd_42_relay_clients_still_relay(tmp_path: Path) -> None:
    """The positive control: a client in ``relayclients`` relays through the same controls."""
    controls = _controls(tmp_path / "c", rcpthosts=ME, percenthack=ME)
    session = Session(
        smtpd_config(controls),
        Client("10.1.2.3", "smtp"),
        queue=FakeQueue(),
        rcptcheck=EveryAddress(),
        domains=frozenset,
    )
    await session.line(b"MAIL FROM:<joe@far.test>\r\n")
    for path in (b"<user%other.example>", b"<user@other.example>"):
        assert (await session.line(b"RCPT TO:" + path + b"\r\n")).reply == "250 2.1.5 ok"
