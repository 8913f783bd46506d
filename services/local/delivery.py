"""What one local delivery will do and write (LOCAL-11, LOCAL-17..LOCAL-26).

Pure. :func:`plan` turns the chosen rule into steps for the adapter to carry out in order;
the ``*_content`` functions assemble the bytes written to a mailbox, queued as a forward or
given to a program. Header lines built from addresses replace each LF by ``_`` (ADDR-01).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from qmesh.contract.envelope import printable, quote_address, split_address
from qmesh.contract.errors import Permanent
from qmesh.contract.events import Origin
from services.local.dotqmail import Broken, Forward, Maildir, Mbox, Program, parse_rule
from services.local.resolve import RuleChoice, Target, newsender

NO_HOST = "Sorry, address must include host name. (#5.1.3)"
LOOPING = "This message is looping: it already has my Delivered-To line. (#5.4.6)"
PROGRAMS_DISABLED = "Program delivery is disabled. (#4.3.0)"
MBOX_UNSUPPORTED = "mbox delivery is not supported. (#4.3.0)"

Step = Maildir | Program | Forward | Broken


@dataclass(frozen=True, slots=True)
class Lines:
    """The exact lines of LOCAL-20, LOCAL-21 and LOCAL-25, each ending in LF."""

    dtline: str
    rpline: str
    ufline: str


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]
    lines: Lines
    newsender: str
    origin: Origin  # of forwards (QUEUE-03, QUEUE-04)
    env: Mapping[str, str] = field(default_factory=dict)  # LOCAL-19, without HOME


def repeatable(p: Plan) -> bool:
    """Can the plan run twice without a second effect? Mailbox objects are written under the
    same name again (ARCH-11) and a broken line only defers; a forward or a program cannot be
    undone, so a plan with one is claimed in the delivery ledger first (hardening #10)."""
    return not any(isinstance(step, Forward | Program) for step in p.steps)


def split_recipient(recipient: str) -> tuple[str, str]:
    """LOCAL-01: ``(local, domain)``; an address without ``@`` is ``D`` 5.1.3."""
    if "@" not in recipient:
        raise Permanent(NO_HOST)
    return split_address(recipient)


def delivered_to(recipient: str) -> str:
    """LOCAL-20: ``Delivered-To: <local>@<domain>`` LF, unquoted; every LF or other control
    character becomes ``_`` (ADDR-01, hardening #4: a bare CR would start a header line)."""
    return "Delivered-To: " + printable(recipient) + "\n"


def return_path(sender: str) -> str:
    """LOCAL-21: ``Return-Path: <sender quoted per ADDR-07>`` LF, control characters as in
    :func:`delivered_to`. A header may hold UTF-8 (RFC 6532), so a UTF-8 local part needs no
    quotes (RFC 6531; hardening #12); an invalid byte still does."""
    return "Return-Path: <" + printable(quote_address(sender, smtputf8=True)) + ">\n"


def from_line(sender: str, when: float) -> str:
    """LOCAL-25's ``UFLINE``: ``From <sender> <date>`` LF, ``MAILER-DAEMON`` for ``<>``."""
    who = printable("".join("-" if c in " \t\n" else c for c in sender)) or "MAILER-DAEMON"
    return f"From {who} {time.asctime(time.gmtime(when))}\n"


def header_lines(recipient: str, sender: str, when: float) -> Lines:
    return Lines(delivered_to(recipient), return_path(sender), from_line(sender, when))


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def is_looping(message: bytes, dtline: str) -> bool:
    """LOCAL-11: does the header (up to the first empty line) hold this exact line?"""
    wanted = _raw(dtline)
    start = 0
    while start < len(message):
        end = message.find(b"\n", start)
        line = message[start:] if end < 0 else message[start : end + 1]
        if line == b"\n":
            return False
        if line == wanted:
            return True
        if end < 0:
            return False
        start = end + 1
    return False


def maildir_content(lines: Lines, message: bytes) -> bytes:
    """LOCAL-24: Return-Path line, Delivered-To line, the message."""
    return _raw(lines.rpline) + _raw(lines.dtline) + message


def forward_content(lines: Lines, message: bytes) -> bytes:
    """LOCAL-23: the Delivered-To line, then the message (no Return-Path)."""
    return _raw(lines.dtline) + message


def _after_dashes(ext: str, count: int) -> str:
    """qmail's EXT2..EXT4: ext after the first, second, third ``-`` (empty when absent)."""
    rest = ext
    for _ in range(count):
        _, dash, rest = rest.partition("-")
        if not dash:
            return ""
    return rest


def _host_prefixes(host: str) -> tuple[str, str, str]:
    """qmail's HOST2..HOST4: host before the last, second-to-last, third-to-last ``.``."""
    out: list[str] = []
    end = len(host)
    for _ in range(3):
        dot = host.rfind(".", 0, end)
        end = dot if dot >= 0 else end
        out.append(host[:end])
    return out[0], out[1], out[2]


def program_env(
    *, sender: str, newsender: str, recipient: str, t: Target, choice: RuleChoice, lines: Lines
) -> dict[str, str]:
    """LOCAL-19: the whole environment of a program, except ``HOME`` (the scratch dir)."""
    local, host = split_address(recipient)
    host2, host3, host4 = _host_prefixes(host)
    env = {
        "SENDER": sender,
        "NEWSENDER": newsender,
        "RECIPIENT": recipient,
        "USER": t.user,
        "HOST": host,
        "LOCAL": local,
        "EXT": t.ext,
        "EXT2": _after_dashes(t.ext, 1),
        "EXT3": _after_dashes(t.ext, 2),
        "EXT4": _after_dashes(t.ext, 3),
        "HOST2": host2,
        "HOST3": host3,
        "HOST4": host4,
        "DTLINE": lines.dtline,
        "RPLINE": lines.rpline,
        "UFLINE": lines.ufline,
    }
    if choice.default is not None:
        env["DEFAULT"] = choice.default
    return env


def plan(
    *,
    sender: str,
    recipient: str,
    namespace: str,
    t: Target,
    choice: RuleChoice,
    programdelivery: bool,
    when: float,
) -> Plan:
    """The steps of the rule ``choice`` for ``t`` (LOCAL-16..LOCAL-19, LOCAL-22, LOCAL-25)."""
    local, domain = split_address(recipient)
    lines = header_lines(recipient, sender, when)
    forward_sender = newsender(sender, local, domain, t)
    steps: list[Step] = []
    for ins in parse_rule(choice.text, mailbox=t.account is not None):
        if isinstance(ins, Mbox):
            steps.append(Broken(ins.index, MBOX_UNSUPPORTED))
        elif isinstance(ins, Program) and not programdelivery:
            steps.append(Broken(ins.index, PROGRAMS_DISABLED))
        else:
            steps.append(ins)
    if t.account is None:
        origin = Origin(kind="alias")
    else:
        origin = Origin(kind="account", account=f"{t.account}@{namespace}")
    env = program_env(
        sender=sender,
        newsender=forward_sender,
        recipient=recipient,
        t=t,
        choice=choice,
        lines=lines,
    )
    return Plan(tuple(steps), lines, forward_sender, origin, env)
