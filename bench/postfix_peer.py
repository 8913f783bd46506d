"""A private Postfix instance on a loopback port, as the benchmark's peer: virtual Maildir
delivery for one domain, nothing leaves the machine, and nothing of the system instance is
used (its own config, queue and data directories, started with ``postfix -c``)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MASTER_PROTO = Path("/etc/postfix/master.cf.proto")
MASTER_DIST = Path("/usr/share/postfix/master.cf.dist")
MAIL_USER = "nobody"  # owns the Maildirs; virtual(8) refuses uid 0


def install_postfix() -> str | None:
    """Install Debian's Postfix when it is missing; the reason it cannot be, else None."""
    if shutil.which("postfix") and shutil.which("smtp-source"):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "Postfix is not installed and apt-get cannot install it here (needs root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "postfix"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not shutil.which("smtp-source"):
        return f"apt-get install postfix failed: {done.stderr.strip()[-500:]}"
    return None


def main_cf(work: Path, domain: str, uid: int, gid: int) -> str:
    """main.cf of the private instance: virtual Maildir for ``domain``, no DNS, no relay."""
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": work / "queue",
        "data_directory": work / "data",
        "maillog_file": work / "maillog",
        "maillog_file_prefixes": work,
        "myhostname": "mx.postfix.bench",
        "mydestination": "localhost",
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "alias_maps": "",
        "alias_database": "",
        "virtual_mailbox_domains": domain,
        "virtual_mailbox_base": work / "mail",
        "virtual_mailbox_maps": f"hash:{work / 'vmailbox'}",
        "virtual_uid_maps": f"static:{uid}",
        "virtual_gid_maps": f"static:{gid}",
        "default_transport": "error:local only",
        "relay_transport": "error:local only",
        "smtpd_relay_restrictions": "reject_unauth_destination",
        "smtpd_client_connection_count_limit": "0",
        "smtp_dns_support_level": "disabled",
        "smtpd_peername_lookup": "no",
        "biff": "no",
        "smtputf8_enable": "no",
    }
    return "".join(f"{k} = {v}\n" for k, v in settings.items())


def master_cf(proto: str, port: int) -> str:
    """Debian's master.cf with nothing chrooted, the public ``smtp inet`` listener commented
    out, and one smtpd on ``127.0.0.1:port``."""
    lines = []
    for line in proto.splitlines():
        fields = line.split()
        if line[:1] in ("", "#", " ", "\t") or len(fields) < 8:
            lines.append(line)
        elif fields[:2] == ["smtp", "inet"]:
            lines.append("#" + line)
        else:
            fields[4] = "n"  # chroot column
            lines.append(" ".join(fields))
    lines.append(f"127.0.0.1:{port} inet n - n - - smtpd")
    return "\n".join(lines) + "\n"


@dataclass
class PostfixPeer:
    work: Path
    port: int
    domain: str

    @property
    def config(self) -> Path:
        return self.work / "etc"

    def maildir_new(self, user: str) -> Path:
        return self.work / "mail" / self.domain / user / "new"

    def master_pid(self) -> int:
        return int((self.work / "queue" / "pid" / "master.pid").read_text().split()[0])

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def stop(self) -> None:
        try:
            pid = self.master_pid()
        except (OSError, ValueError):
            return
        self.postfix("stop")
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            self.postfix("abort")


def start_postfix(work: Path, port: int, domain: str, users: list[str]) -> PostfixPeer:
    """Configure and start the private instance in the new directory ``work``, whose parents
    must be searchable by everyone: the queue belongs to ``postfix``, the Maildirs to
    ``nobody``."""
    mail_user = pwd.getpwnam(MAIL_USER)
    work.mkdir(mode=0o755)
    etc, mail = work / "etc", work / "mail"
    for directory in (etc, mail, work / "queue"):
        directory.mkdir(mode=0o755)
    os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
    (etc / "main.cf").write_text(main_cf(work, domain, mail_user.pw_uid, mail_user.pw_gid))
    proto = MASTER_PROTO if MASTER_PROTO.exists() else MASTER_DIST
    (etc / "master.cf").write_text(master_cf(proto.read_text(), port))
    (work / "vmailbox").write_text("".join(f"{u}@{domain} {domain}/{u}/\n" for u in users))
    subprocess.run(["postmap", "-c", str(etc), f"hash:{work / 'vmailbox'}"], check=True)
    peer = PostfixPeer(work, port, domain)
    for step in ("check", "start"):  # check creates the queue's subdirectories
        done = peer.postfix(step)
        if done.returncode != 0:
            log = (work / "maillog").read_text() if (work / "maillog").exists() else ""
            raise RuntimeError(f"postfix {step} failed: {done.stderr}{log[-2000:]}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            peer.master_pid()
            return peer
        except (OSError, ValueError):
            time.sleep(0.1)
    peer.stop()
    raise TimeoutError(f"postfix master did not start; see {work / 'maillog'}")
