"""The comparison benchmark's own logic, without Postfix or qmesh running: CPU read from
``/proc`` stat lines, Maildir counting, Postfix's master.cf rewrite, py-spy stack summaries."""

from __future__ import annotations

from pathlib import Path

from bench.bus_traffic import counters, monitor_url, per_message
from bench.compare_postfix import LOADS, Run, accounts, floor_ticks, smtp_source
from bench.cputime import ProcStat, parse_stat, snapshot, tree_ticks
from bench.postfix_peer import main_cf, master_cf
from bench.profile_summary import parse, summarise
from bench.qmesh_site import count_files


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cu: int, cs: int) -> str:
    rest = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime), str(cu), str(cs)] + ["0"] * 8
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


def test_a_stat_line_gives_own_and_reaped_ticks_even_with_odd_names() -> None:
    st = parse_stat(stat_line(42, "python -m (x) y", 7, 100, 30, 5, 2))
    assert st == ProcStat(42, "python -m (x) y", 7, 130, 7, 30, 2)


def test_the_live_stat_of_this_process_parses() -> None:
    st = parse_stat(Path("/proc/self/stat").read_text())
    assert st.own >= 0 and st.ppid > 0


def test_a_tree_counts_live_descendants_and_reaped_children_once() -> None:
    stats = {
        1: ProcStat(1, "init", 0, 999, 999),
        10: ProcStat(10, "master", 1, 5, 300),  # 300: smtpd processes that exited
        11: ProcStat(11, "smtpd", 10, 20, 0),
        12: ProcStat(12, "cleanup", 11, 7, 1),
        20: ProcStat(20, "other", 1, 50, 0),
    }
    assert tree_ticks(stats, 10) == 5 + 300 + 20 + 7 + 1
    assert tree_ticks(stats, 99) == 0  # gone


def test_the_kernel_part_of_a_tree_counts_system_time_alone() -> None:
    stats = {
        10: ProcStat(10, "master", 1, 5, 300, own_kernel=2, reaped_kernel=120),
        11: ProcStat(11, "smtpd", 10, 20, 0, own_kernel=9),
    }
    assert tree_ticks(stats, 10, kernel=True) == 2 + 120 + 9
    assert tree_ticks(stats, 10) == 5 + 300 + 20


def test_a_snapshot_groups_trees_and_counts_a_supervisor_alone(tmp_path: Path) -> None:
    for pid, ppid, own in ((100, 1, 3), (101, 100, 40), (102, 100, 50), (103, 101, 5)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat_line(pid, "p", ppid, own, 0, 0, 0))
    (tmp_path / "self").mkdir()
    groups = {"send": [101], "local": [102], "up": [100], "gone": [999]}
    assert snapshot(groups, own_only=[100], proc=tmp_path) == {
        "send": 45, "local": 50, "up": 3, "gone": 0,
    }  # fmt: skip
    assert snapshot(groups, own_only=[100], proc=tmp_path, kernel=True) == {
        "send": 0, "local": 0, "up": 0, "gone": 0,
    }  # fmt: skip


def test_a_snapshot_of_kernel_time_reads_stime_and_cstime(tmp_path: Path) -> None:
    for pid, ppid, user, system, reaped_system in ((100, 1, 3, 1, 0), (101, 100, 40, 15, 4)):
        (tmp_path / str(pid)).mkdir()
        line = stat_line(pid, "p", ppid, user, system, 0, reaped_system)
        (tmp_path / str(pid) / "stat").write_text(line)
    groups = {"send": [101], "up": [100]}
    assert snapshot(groups, own_only=[100], proc=tmp_path, kernel=True) == {"send": 19, "up": 1}
    assert snapshot(groups, own_only=[100], proc=tmp_path) == {"send": 59, "up": 4}


def test_count_files_counts_messages_not_hidden_files_and_zero_before_the_first(
    tmp_path: Path,
) -> None:
    new = tmp_path / "bench1" / "new"
    assert count_files(new) == 0
    new.mkdir(parents=True)
    for name in ("1733.M1P2.mx", "1733.M2P2.mx", ".meta-1733.M1P2.mx"):
        (new / name).write_bytes(b"x")
    assert count_files(new) == 2


PROTO = """\
# comment
smtp      inet  n       -       y       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
qmgr      unix  n       -       n       300     1       qmgr
maildrop  unix  -       n       n       -       -       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}
"""


def test_master_cf_listens_only_on_the_loopback_port_and_chroots_nothing() -> None:
    text = master_cf(PROTO, 12345)
    services = [line.split() for line in text.splitlines() if line[:1] not in ("", "#", " ")]
    assert ["smtp", "inet"] not in [s[:2] for s in services]
    assert services[-1] == ["127.0.0.1:12345", "inet", "n", "-", "n", "-", "-", "smtpd"]
    assert {s[4] for s in services} == {"n"}
    assert "  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}" in text


def test_main_cf_delivers_the_domain_to_maildirs_and_relays_nothing(tmp_path: Path) -> None:
    conf = dict(
        line.split(" = ", 1) for line in main_cf(tmp_path, "bench.test", 65534, 65534).splitlines()
    )
    assert conf["virtual_mailbox_domains"] == "bench.test"
    assert conf["virtual_mailbox_base"] == str(tmp_path / "mail")
    assert conf["queue_directory"] == str(tmp_path / "queue")
    assert conf["default_transport"] == conf["relay_transport"] == "error:local only"
    assert conf["inet_interfaces"] == "loopback-only"


UP = 'process 1:"python -m qmesh.cli.main up"'
SEND = f'{UP};process 2:"python -m services.send"'
RUN = "run (qmesh/runtime/service.py:141)"
RAW = "".join(
    f"{stack} {count}\n"
    for stack, count in (
        (f"{SEND};{RUN};_sync (qmesh/store/files.py:30)", 30),
        (f"{SEND};{RUN};_settle (qmesh/bus/consumer.py:9);_sync (qmesh/store/files.py:31)", 10),
        (f"{SEND};_worker (concurrent/futures/thread.py:83)", 60),
        (f"{UP};select (selectors.py:468)", 5),
    )
)


def test_profiles_are_split_by_the_innermost_process_and_counted_per_function() -> None:
    profiles = parse(RAW)
    send = profiles["send"]
    assert send.samples == 100
    assert send.inclusive["run (qmesh/runtime/service.py)"] == 40
    assert send.leaf["_sync (qmesh/store/files.py)"] == 40  # two lines, one function
    assert profiles["python -m qmesh.cli.main"].samples == 5


def test_the_summary_gives_ms_per_message_and_shares() -> None:
    text = summarise(RAW, messages=10, rate=100)
    assert "send: 100.00 ms/msg sampled (100 samples)" in text
    assert " 40.0%  _sync (qmesh/store/files.py)" in text


def test_smtp_source_recipients_land_in_the_accounts_the_benchmark_creates() -> None:
    """``smtp-source -r 3 -t bench1@...`` writes to bench1, 2bench1 and 3bench1."""
    assert accounts(1) == ["bench1"]
    assert accounts(3) == ["bench1", "2bench1", "3bench1"]
    command = smtp_source(2525, LOADS["2k-10"], 100, 3)
    assert command[command.index("-r") + 1] == "3"


def test_the_floor_counts_servers_of_no_python_whole_and_only_the_kernel_of_the_rest() -> None:
    run = Run(
        accepted=1.0,
        end_to_end=1.0,
        cpu={"nats-server": 50, "seaweedfs (S3)": 40, "smtpd": 30, "send": 20},
        kernel={"nats-server": 35, "seaweedfs (S3)": 10, "smtpd": 12, "send": 5},
    )
    assert floor_ticks(run) == 50 + 40 + 12 + 5


def test_bus_counters_are_summed_per_nats_user_and_writes_read_per_stream(
    tmp_path: Path,
) -> None:
    connz = {
        "connections": [
            {"authorized_user": "qmesh-send", "in_msgs": 10, "out_msgs": 4, "in_bytes": 100},
            {"authorized_user": "qmesh-send", "in_msgs": 5, "out_msgs": 1, "in_bytes": 50},
            {"authorized_user": "qmesh-smtpd", "in_msgs": 2, "out_msgs": 2},
        ]
    }
    jsz = {
        "account_details": [{"stream_detail": [{"name": "QMESH_TODO", "state": {"last_seq": 7}}]}]
    }
    before = counters(connz, jsz)
    assert before["qmesh-send in msgs"] == 15 and before["qmesh-send in bytes"] == 150
    assert before["writes QMESH_TODO"] == 7
    after = {**before, "qmesh-send in msgs": 35, "writes QMESH_TODO": 17, "qmesh-smtpd in msgs": 1}
    assert per_message(before, after, 10) == {"qmesh-send in msgs": 2.0, "writes QMESH_TODO": 1.0}
    out = tmp_path / "qmesh-up.out"
    assert monitor_url(out) is None
    out.write_text(
        "qmesh: NATS writes ... (sync_interval: always; monitoring http://127.0.0.1:1)\n"
        "qmesh: NATS writes ... (sync_interval: always; monitoring http://127.0.0.1:2)\n"
    )
    assert monitor_url(out) == "http://127.0.0.1:2"
