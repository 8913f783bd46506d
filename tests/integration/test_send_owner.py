"""ARCH-06: at most one send worker owns a message at a time (lease in qmesh_leases)."""

from __future__ import annotations

import asyncio

import nats
import pytest

from qmesh.bus.provision import ensure_kv
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from services.send.owner import Ownership

pytestmark = pytest.mark.integration

QID = "1796466031786.4958636f440ea3ad"


async def test_arch_06_one_owner_across_replicas_and_within_one(private_nats: NatsServer) -> None:
    nc = await nats.connect(private_nats.url)
    try:
        leases = await ensure_kv(nc.jetstream(), subjects.KV_LEASES, 1)
        replica_a, replica_b = Ownership(lambda: leases), Ownership(lambda: leases)
        inside: list[str] = []

        async with replica_a.hold(QID) as owned_a:
            assert owned_a
            async with replica_b.hold(QID) as owned_b:
                assert not owned_b  # another replica: told to leave it
            inside.append("a")

            async def second_handler_in_a() -> None:
                async with replica_a.hold(QID) as owned:
                    inside.append(f"a2:{owned}")

            waiting = asyncio.create_task(second_handler_in_a())
            await asyncio.sleep(0.1)
            assert inside == ["a"]  # the same replica waits for its first handler
        await waiting
        assert inside == ["a", "a2:True"]
        async with replica_b.hold(QID) as owned_b:
            assert owned_b  # released: the other replica may take it now
    finally:
        await nc.close()


async def test_arch_06_a_dead_replicas_lease_is_taken_over(private_nats: NatsServer) -> None:
    """A replica killed while attending leaves its lease; the next owner need not wait for TTL."""
    nc = await nats.connect(private_nats.url)
    try:
        leases = await ensure_kv(nc.jetstream(), subjects.KV_LEASES, 1)
        await leases.put(f"send.{QID}", b"deadbeef 1000.000")  # taken at t=1000, never released
        fresh = Ownership(lambda: leases, clock=lambda: 1010.0)
        async with fresh.hold(QID) as owned:
            assert not owned  # ten seconds: maybe still working
        later = Ownership(lambda: leases, clock=lambda: 1031.0)
        async with later.hold(QID) as owned:
            assert owned  # thirty-one seconds: its owner is gone
    finally:
        await nc.close()


async def test_arch_06_a_finished_messages_lease_is_left_and_taken_back_in_one_write(
    private_nats: NatsServer,
) -> None:
    """Throughput #10: the lease of a finished message is not deleted (one durable write less
    per message). Another replica is still told it is owned until it goes stale; the replica
    that finished it takes it back with one compare-and-set, unbroken."""
    nc = await nats.connect(private_nats.url)
    try:
        leases = await ensure_kv(nc.jetstream(), subjects.KV_LEASES, 1)
        finisher = Ownership(lambda: leases, clock=lambda: 1000.0)
        async with finisher.hold(QID) as owned:
            assert owned
            finisher.gone(QID)
        left = await leases.get(f"send.{QID}")
        assert left.value is not None and left.value.endswith(b" 1000.000")
        other = Ownership(lambda: leases, clock=lambda: 1010.0)
        async with other.hold(QID) as owned:
            assert not owned
        async with finisher.hold(QID) as owned:
            assert owned and finisher.unbroken(QID)
        later = Ownership(lambda: leases, clock=lambda: 1031.0)
        async with later.hold(QID) as owned:
            assert owned  # stale: taken over
    finally:
        await nc.close()
