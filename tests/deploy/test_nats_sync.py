"""The compose files' NATS configuration alone makes JetStream fsync every write before its
acknowledgement (throughput #10): loaded into a real nats-server, /varz says so."""

from __future__ import annotations

from pathlib import Path

from qmesh.cli.natsd import durability_problem, read_varz, start_nats_server

ROOT = Path(__file__).resolve().parents[2]


def test_throughput_10_the_compose_nats_config_syncs_every_write(tmp_path: Path) -> None:
    server = start_nats_server(
        tmp_path / "nats",
        config=ROOT / "deploy/nats/qmesh.conf",
        sync_always=False,  # only what the file itself says
        monitor=-1,
    )
    try:
        assert server.monitor is not None
        varz = read_varz(server.monitor)
        assert varz["jetstream"]["config"]["sync_always"] is True
        assert durability_problem(varz) is None
    finally:
        server.stop()
