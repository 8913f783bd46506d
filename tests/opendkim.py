"""OpenDKIM as an independent DKIM verifier for tests (Debian package ``opendkim``).

``opendkim -t FILE`` verifies a message as the milter would and prints the
Authentication-Results field it would add. The milter binary is built with libunbound, so
``ResolverConfiguration`` can name an Unbound configuration that forwards every query to the
loopback DNS server of the test, on its own port. (``opendkim-testmsg`` from
``opendkim-tools`` cannot: its library asks the libc resolver, which knows only port 53.)
Unbound answers names under ``test.`` itself unless told not to (RFC 6761); the
configuration below lets them through.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

RESULT = re.compile(r"dkim=(\w+)[^;]*?header\.d=(\S+)[^;]*?header\.a=(\S+)[^;]*?header\.s=(\S+)")


@dataclass(frozen=True)
class Verdict:
    result: str  # pass, fail, neutral, ...
    domain: str
    algorithm: str
    selector: str


def need_opendkim() -> str:
    found = shutil.which("opendkim") or (
        "/usr/sbin/opendkim" if Path("/usr/sbin/opendkim").exists() else None
    )
    if found is None:
        pytest.skip(
            "opendkim is not installed (Debian package opendkim; deploy/ci/system-packages.sh)"
        )
    return found


def verify(message: bytes, dns_port: int, workdir: Path) -> list[Verdict]:
    """OpenDKIM's result for each DKIM-Signature of ``message``, keys from 127.0.0.1:dns_port."""
    program = need_opendkim()
    workdir.mkdir(parents=True, exist_ok=True)
    unbound = workdir / "unbound.conf"
    unbound.write_text(
        "server:\n"
        "  do-not-query-localhost: no\n"
        '  local-zone: "test." nodefault\n'
        '  local-zone: "example." nodefault\n'
        "forward-zone:\n"
        '  name: "."\n'
        f"  forward-addr: 127.0.0.1@{dns_port}\n"
    )
    conf = workdir / "opendkim.conf"
    conf.write_text(
        "Mode v\n"
        f"ResolverConfiguration {unbound}\n"
        "Syslog no\n"
        "AlwaysAddARHeader yes\n"
        "AuthservID verifier.test\n"
        "MinimumKeyBits 1024\n"
    )
    path = workdir / "message.eml"
    crlf = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    path.write_bytes(crlf)
    done = subprocess.run(
        [program, "-x", str(conf), "-vvv", "-t", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    header = re.sub(r"\([^()]*\)", "", " ".join(done.stdout.split()))  # drop comments
    return [Verdict(*m.groups()) for m in RESULT.finditer(header)]
