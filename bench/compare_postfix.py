"""Postfix and qmesh on the same machine in the same run, driven by Postfix's ``smtp-source``.

    .venv/bin/python bench/compare_postfix.py [--load 2k-10|2k-50|100k-10] [--messages 2000]
        [--repeats 3] [--store files|s3] [--replicas 1|2] [--profile DIR]

Installs Debian's Postfix if it is missing (or says SKIP), starts a private Postfix instance
(virtual Maildir on a free loopback port) and ``qmesh up`` (free ports), then sends the same
load to each, alternating which goes first in each repeat. One message per SMTP connection.
For each it prints accepted msgs/s (``smtp-source`` finished: every message had its 250),
end-to-end msgs/s (every message counted in the mailbox) and server CPU per message, read from
``/proc`` for every server process, exited children included; then the ratios qmesh/Postfix.
Medians with the range over the repeats. With ``--profile DIR``, one more qmesh run is
sampled by ``py-spy`` (PyPI ``py-spy``) and summarised per process. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bus_traffic import monitor_url, per_message
from bench.bus_traffic import snapshot as bus_snapshot
from bench.cputime import ms_per_message, scan, snapshot
from bench.postfix_peer import PostfixPeer, install_postfix, start_postfix
from bench.profile_summary import summarise
from bench.qmesh_site import DOMAIN, Site, count_files, start_site
from tests.servers import free_ports

ACCOUNT = "bench1"
SENDER = "bench@far.test"
SETTLE_TICKS = 3  # a server is idle again when its processes use less than this per 0.5 s


@dataclass(frozen=True)
class Load:
    size: int  # bytes per message, smtp-source -l
    sessions: int


LOADS = {"2k-10": Load(2048, 10), "2k-50": Load(2048, 50), "100k-10": Load(102400, 10)}


@dataclass
class Target:
    name: str
    port: int
    delivered: Callable[[], int]
    groups: dict[str, list[int]]  # process group -> root pids
    own_only: list[int] = field(default_factory=list)  # supervisors: their own time only
    poll: float = 0.05  # seconds between mailbox counts
    bus: Callable[[], dict[str, int]] | None = None  # NATS counters (bench.bus_traffic)


@dataclass
class Run:
    accepted: float  # msgs/s until the last 250
    end_to_end: float | None  # msgs/s until the last one is in the mailbox; None: never
    cpu: dict[str, int]  # ticks per process group
    bus: dict[str, float] = field(default_factory=dict)  # NATS counters per message
    kernel: dict[str, int] = field(default_factory=dict)  # of ``cpu``, system time


def accounts(recipients: int) -> list[str]:
    """The mailboxes ``smtp-source -r N -t bench1@...`` writes to: bench1, 2bench1 ... Nbench1."""
    return [ACCOUNT] + [f"{n}{ACCOUNT}" for n in range(2, recipients + 1)]


def smtp_source(port: int, load: Load, messages: int, recipients: int = 1) -> list[str]:
    return ["smtp-source", "-s", str(load.sessions), "-m", str(messages), "-l", str(load.size),
            "-r", str(recipients), "-f", SENDER, "-t", f"{ACCOUNT}@{DOMAIN}",
            f"127.0.0.1:{port}"]  # fmt: skip


def drive(
    target: Target, load: Load, messages: int, recipients: int = 1, timeout: float = 900.0
) -> Run:
    """One run: the load in, the clock stopped when the mailboxes hold all of it, the CPU read
    once the server has gone quiet again (queue clean-up after delivery counts)."""
    goal = target.delivered() + messages * recipients
    bus_before = target.bus() if target.bus else {}
    before = snapshot(target.groups, target.own_only)
    kernel_before = snapshot(target.groups, target.own_only, kernel=True)
    start = time.perf_counter()
    command = smtp_source(target.port, load, messages, recipients)
    sent = subprocess.run(command, capture_output=True, text=True)
    accepted = messages / (time.perf_counter() - start)
    if sent.returncode != 0:
        said = (sent.stdout + sent.stderr)[-600:]
        sys.stdout.write(f"  {target.name}: smtp-source exited {sent.returncode}: {said}\n")
    end_to_end = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.delivered() >= goal:
            end_to_end = messages / (time.perf_counter() - start)
            break
        time.sleep(target.poll)
    settle(target)
    after = snapshot(target.groups, target.own_only)
    kernel = snapshot(target.groups, target.own_only, kernel=True)
    bus = per_message(bus_before, target.bus(), messages) if target.bus else {}
    return Run(
        accepted,
        end_to_end,
        {g: after[g] - before[g] for g in before},
        bus,
        {g: kernel[g] - kernel_before[g] for g in kernel_before},
    )


def settle(target: Target, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    last = sum(snapshot(target.groups, target.own_only).values())
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(snapshot(target.groups, target.own_only).values())
        if now - last < SETTLE_TICKS:
            return
        last = now


def postfix_target(peer: PostfixPeer, users: list[str]) -> Target:
    return Target(
        "Postfix",
        peer.port,
        lambda: sum(count_files(peer.maildir_new(user)) for user in users),
        {"postfix (all processes)": [peer.master_pid()]},
    )


def qmesh_target(site: Site) -> Target:
    """Each child of ``qmesh up`` by what it runs, the replicas with their service, the
    S3 server if there is one, and ``qmesh up`` itself (its own time only)."""
    up = site.cluster.process.pid
    groups: dict[str, list[int]] = {}
    for pid in (st.pid for st in scan().values() if st.ppid == up):
        groups.setdefault(process_label(pid), []).append(pid)
    for replica in site.replicas:
        groups.setdefault(replica.service, []).append(replica.process.pid)
    if site.s3:
        groups["seaweedfs (S3)"] = [site.s3.process.pid]
    groups["qmesh up"] = [up]
    poll = 0.5 if site.s3 else 0.05  # listing the bucket costs the S3 server CPU
    count = site.delivered
    monitor = monitor_url(site.cluster.output)
    bus = functools.partial(bus_snapshot, monitor) if monitor else None
    return Target("qmesh", site.cluster.smtp_port, count, groups, [up], poll, bus)


# qmesh's processes that run no Python of ours: their whole CPU counts toward the floor
NOT_PYTHON = ("nats-server", "seaweedfs (S3)")


def floor_ticks(run: Run) -> int:
    """The CPU of a qmesh run that its Python code does not spend itself: the whole time of
    nats-server (and of the S3 server) and the system time of every other process. It is what
    the contract's messages and fsynced writes, the sockets and the files cost, the part that no
    change to the interpreters' work removes."""
    return sum(run.cpu[g] if g in NOT_PYTHON else run.kernel.get(g, 0) for g in run.cpu)


def process_label(pid: int) -> str:
    """``services.send`` -> ``send``; anything else by its program name."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    for arg in argv:
        if arg.startswith(b"services."):
            return arg.decode().removeprefix("services.")
    return Path(argv[0].decode()).name


def spread(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):8.2f} [{min(values):.2f}-{max(values):.2f}]"


def ratio(a: Sequence[float], b: Sequence[float]) -> str:
    if not a or not b or statistics.median(b) == 0:
        return ""
    return f"{statistics.median(a) / statistics.median(b):.2f}x"


def report(args: argparse.Namespace, runs: dict[str, list[Run]], messages: int) -> None:
    out = sys.stdout.write
    load = LOADS[args.load]
    out(
        f"\nload {args.load}: {messages} messages of {load.size} bytes, {load.sessions} sessions, "
        f"{args.recipients} recipient(s) each, one message per connection; "
        f"qmesh store {args.store}, replicas {args.replicas}; "
        f"{args.repeats} interleaved repeats; median [min-max]\n\n"
    )
    pf, qm = runs["Postfix"], runs["qmesh"]

    def cpu_total(rs: list[Run]) -> list[float]:
        return [ms_per_message(sum(r.cpu.values()), messages) for r in rs]

    rows: list[tuple[str, list[float], list[float]]] = [
        ("accepted msgs/s", [r.accepted for r in pf], [r.accepted for r in qm]),
        (
            "end-to-end msgs/s",
            [r.end_to_end for r in pf if r.end_to_end],
            [r.end_to_end for r in qm if r.end_to_end],
        ),
        ("server CPU ms/msg", cpu_total(pf), cpu_total(qm)),
        (
            "  floor (see below)",
            cpu_total(pf),
            [ms_per_message(floor_ticks(r), messages) for r in qm],
        ),
    ]
    out(f"{'':22}{'Postfix':>28}{'qmesh':>28}{'qmesh/Postfix':>15}\n")
    for name, p, q in rows:
        out(f"{name:22}{spread(p):>28}{spread(q):>28}{ratio(q, p):>15}\n")
    incomplete = sum(1 for r in pf + qm if r.end_to_end is None)
    if incomplete:
        out(f"  ({incomplete} runs never saw every message in the mailbox; left out)\n")
    out(
        "  floor: of qmesh's CPU, what its Python code does not spend itself (nats-server and\n"
        "  the S3 server whole, every other process's system time), against Postfix's whole\n"
    )
    out(f"\nserver CPU ms/msg by process{'of it in the kernel':>59}\n")
    for name, rs in runs.items():
        for group in rs[0].cpu:
            values = [ms_per_message(r.cpu[group], messages) for r in rs]
            kernel = [ms_per_message(r.kernel.get(group, 0), messages) for r in rs]
            out(f"  {name:9}{group:26}{spread(values):>28}{spread(kernel):>28}\n")
    if qm and qm[0].bus:
        out("\nqmesh on the bus, per message (NATS users: in = sent to NATS, out = received)\n")
        for counter in sorted(qm[0].bus):
            values = [r.bus.get(counter, 0.0) for r in qm]
            out(f"  {counter:40}{spread(values):>28}\n")


def conditions() -> str:
    load = os.getloadavg()
    return (
        f"conditions: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}, Python {platform.python_version()}, {platform.system()} "
        f"{platform.release()}, {postfix_version()}\n"
    )


def postfix_version() -> str:
    done = subprocess.run(["postconf", "-d", "mail_version"], capture_output=True, text=True)
    return f"Postfix {done.stdout.split('=')[-1].strip()}" if done.returncode == 0 else ""


def profile(site: Site, load: Load, messages: int, recipients: int, directory: Path) -> None:
    """One more qmesh run with py-spy sampling every qmesh process; a summary per process."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        sys.stdout.write("profile: SKIP (py-spy is not installed: pip install py-spy)\n")
        return
    directory.mkdir(parents=True, exist_ok=True)
    target = qmesh_target(site)
    roots = [(site.cluster.process.pid, "up")] + [
        (r.process.pid, f"{r.service}-replica") for r in site.replicas
    ]
    samplers = []
    for pid, name in roots:
        for mode, extra in (("active", []), ("gil", ["--gil"])):  # not idle / holding the GIL
            raw = directory / f"qmesh-{name}-{mode}.txt"
            cmd = [pyspy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
                   "--rate", "100", "--format", "raw", "--output", str(raw), *extra]  # fmt: skip
            sampler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            samplers.append((sampler, raw))
    time.sleep(2)  # py-spy attaches
    run = drive(target, load, messages, recipients)
    for sampler, _ in samplers:
        sampler.send_signal(signal.SIGINT)
    for sampler, _ in samplers:
        _, err = sampler.communicate(timeout=60)
        if sampler.returncode not in (0, -signal.SIGINT):
            sys.stdout.write(f"py-spy: {err.decode()[-500:]}\n")
    sys.stdout.write(
        f"\nprofile of one qmesh run ({messages} messages, end to end "
        f"{run.end_to_end or 0:.1f} msgs/s under py-spy), raw stacks in {directory}\n"
    )
    for _, raw in samplers:
        if raw.exists():
            sys.stdout.write(f"\n== {raw.name}\n")
            sys.stdout.write(summarise(raw.read_text(), messages, rate=100))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--load", choices=LOADS, default="2k-10")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200, help="messages each, not counted")
    parser.add_argument("--store", choices=("files", "s3"), default="files")
    parser.add_argument("--replicas", type=int, choices=(1, 2), default=1)
    parser.add_argument("--recipients", type=int, default=1, help="local recipients a message")
    parser.add_argument("--profile", type=Path, help="also profile one qmesh run into DIR")
    args = parser.parse_args()
    missing = install_postfix()
    if missing:
        sys.stdout.write(f"SKIP: {missing}\n")
        return 0
    load = LOADS[args.load]
    sys.stdout.write(conditions())
    with tempfile.TemporaryDirectory(prefix="qmesh-vs-postfix-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # the Postfix instance runs as postfix and nobody under it
        (port,) = free_ports(1)
        users = accounts(args.recipients)
        peer = start_postfix(work / "postfix", port, DOMAIN, users)
        site: Site | None = None
        try:
            site = start_site(work / "qmesh", users, args.store, args.replicas)
            targets = [postfix_target(peer, users), qmesh_target(site)]
            for target in targets:
                if args.warmup:
                    drive(target, load, args.warmup, args.recipients)
            runs: dict[str, list[Run]] = {t.name: [] for t in targets}
            for repeat in range(args.repeats):
                for target in targets if repeat % 2 == 0 else targets[::-1]:
                    run = drive(target, load, args.messages, args.recipients)
                    runs[target.name].append(run)
                    e2e = f"{run.end_to_end:.1f}" if run.end_to_end else "incomplete"
                    sys.stdout.write(
                        f"repeat {repeat + 1} {target.name:8} accepted {run.accepted:7.1f} "
                        f"end-to-end {e2e:>8} msgs/s, CPU "
                        f"{ms_per_message(sum(run.cpu.values()), args.messages):.2f} ms/msg\n"
                    )
            report(args, runs, args.messages)
            if args.profile:
                profile(site, load, args.messages, args.recipients, args.profile)
        finally:
            if site:
                site.stop()
            peer.stop()
    sys.stdout.write(conditions())
    return 0


if __name__ == "__main__":
    sys.exit(main())
