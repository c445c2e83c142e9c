"""A Redis Cluster primary dies mid-stream: its replica takes over and nothing is lost.

The cluster of its own has a node timeout of one second. While the worker charges a
steady stream over 24 partitions, one primary is cut off from its replica (the replica is
stopped and the replication link killed), goes on applying batches that the replica never
sees, and is then SIGKILLed. The cluster promotes the replica on its own (no CLUSTER
FAILOVER: the primary is dead), which now serves the primary's slots without its last
writes and without the scripts. The worker rides out the outage, loads the scripts
again, finds from its watermarks that Redis forgot, applies those records again, and
goes on. Every event is charged once; every balance is what the prices say and equals
its ledger sum.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from charger_tools.cluster import Cluster, start_cluster
from charger_tools.embedded import EmbeddedServer
from tests.kit.cluster import owners, spread
from tests.kit.harness import Run, started_run
from tests.kit.traffic import open_accounts_per_slot, stream, tally, traffic
from tests.kit.waits import until
from tests.kit.worker import running

PARTITIONS = 24


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A cluster of this test's own: it loses a node."""
    cluster = start_cluster(node_timeout_ms=1000)
    try:
        yield cluster
    finally:
        cluster.stop()


def watermarks(cluster: Cluster, node: EmbeddedServer, run: Run, slots: list[int]) -> object:
    """The watermark hashes of `slots` as `node` holds them."""
    return [cluster.command(node, "HGETALL", run.keys.watermark(slot)) for slot in slots]


async def test_a_killed_primary_is_replaced_by_its_replica_and_nothing_is_lost(
    cluster: Cluster, wide_broker: str
) -> None:
    async with started_run(wide_broker, cluster.url, PARTITIONS) as run:
        accounts = await open_accounts_per_slot(run, "f", 2)
        rounds, balances, ids = traffic(run, accounts, rounds=60)
        serving = owners(cluster, run.keys)
        # Not the first node: the URL names it, and the tests' clients start from it.
        victim = cluster.nodes[1]
        replica = cluster.replica_of(victim)
        victim_slots = [slot for slot, node in serving.items() if node is victim]
        settings = run.settings_with(watermark_check_s=0.2, retry_backoff_max_ms=1000)
        async with running(settings) as rt:
            await run.wait_idle(60)  # accounts opened before their traffic is read
            producer = await stream(run, rounds, warmup=15)

            # The replica stops following: what the primary applies from now on, it lacks.
            os.kill(replica.pid, signal.SIGSTOP)
            try:
                cluster.command(victim, "CLIENT", "KILL", "TYPE", "replica")
                marks = (cluster, victim, run, victim_slots)
                before = await asyncio.to_thread(watermarks, *marks)

                async def applied_since() -> bool:
                    return await asyncio.to_thread(watermarks, *marks) != before

                await until(applied_since, "batches applied on the cut-off primary", 30)
                assert not producer.done(), "the stream ended before the primary died"
                cluster.kill(victim)
                killed = time.monotonic()
            finally:
                os.kill(replica.pid, signal.SIGCONT)
            await asyncio.to_thread(cluster.wait_promoted, replica, 30)
            promoted = time.monotonic() - killed

            await producer
            await run.wait_idle(120)
            sample = rt.metrics.registry.get_sample_value
            again = sample("charger_redis_forgotten_records_total") or 0
            errors = {
                stage: sample(
                    "charger_dependency_errors_total", {"dependency": "redis", "stage": stage}
                )
                or 0
                for stage in ("batch", "tick", "probe")
            }
            loads = rt.store.scripts.loads

        result = await tally(run, balances, ids)
        after = owners(cluster, run.keys)
    assert (result.lost, result.doubled, result.mismatched, result.invented) == (0, 0, 0, 0)
    # And the faults really struck: the replica serves the slots, the worker saw the
    # outage, found what the replica lacked, and met its missing scripts.
    assert {slot: after[slot] for slot in victim_slots} == dict.fromkeys(victim_slots, replica)
    assert errors["batch"] + errors["tick"] > 0, "the worker never saw the primary go"
    # The probe PINGs every primary (one node's answer would not have said it).
    assert errors["probe"] > 0, "the probe never saw the primary go"
    assert again > 0, "the promoted replica lacked nothing: the loss was not made"
    assert loads >= 2, "the promoted replica had the scripts: NOSCRIPT was not met"
    print(
        f"\nprimary with {len(victim_slots)} of {PARTITIONS} slots killed, replica promoted "
        f"after {promoted:.1f}s; {again:.0f} records applied again, script loads {loads}, "
        f"republished {result.republished}; lost 0, doubled 0, mismatched 0; "
        f"spread now {spread(cluster, run.keys)}"
    )
