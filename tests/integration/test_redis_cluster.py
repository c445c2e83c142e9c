"""charger on a Redis Cluster: three primaries, three replicas, 24 partitions.

Each of charger's slots is a hash tag ``{tN}``, so all keys of a slot live on the primary
serving the tag's hash slot, and every script call and command goes to that primary. The
worker charges a stream over all 24 partitions there, takes its scripts back when one
primary lost them, and follows a slot that moves to another primary; every event is
charged once and every balance equals its ledger sum.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster

from charger.api.accounts import AccountReader
from charger.protocol.keys import Keys
from charger_tools.cluster import Cluster, port_of, tag_slot
from tests.kit.acl import WORKER_USER, parse, render
from tests.kit.cluster import owners, redis_for, spread, tag_of
from tests.kit.harness import started_run
from tests.kit.servers import worker_password
from tests.kit.traffic import open_accounts_per_slot, tally, traffic
from tests.kit.worker import Worker, running

PARTITIONS = 24
NOTHING_WRONG = {"lost": 0, "invented": 0, "doubled": 0, "mismatched": 0}


def test_the_24_slots_spread_over_every_primary(redis_cluster: Cluster) -> None:
    keys = Keys("ch", PARTITIONS)
    node = redis_cluster.nodes[0]
    for slot in range(PARTITIONS):
        # The hash slot the server computes for a key is the one of the key's tag.
        assert redis_cluster.command(node, "CLUSTER", "KEYSLOT", keys.watermark(slot)) == (
            tag_slot(tag_of(keys, slot))
        )
    tags = spread(redis_cluster, keys)
    print(f"\n{{t0}}..{{t23}} over the primaries: {tags}")
    assert sum(tags.values()) == PARTITIONS
    assert len(tags) == 3, "a primary serves none of charger's slots"


async def test_24_partitions_are_charged_once_on_three_primaries(
    redis_cluster: Cluster, wide_broker: str
) -> None:
    async with started_run(wide_broker, redis_cluster.url, PARTITIONS) as run:
        accounts = await open_accounts_per_slot(run, "e", 2)
        rounds, balances, ids = traffic(run, accounts, rounds=8)
        # The real worker process, turned to the cluster by its flag (a plain URL).
        plain = redis_cluster.url.replace("redis+cluster://", "redis://")
        worker = Worker(run, CHARGER_REDIS_URL=plain, CHARGER_REDIS_CLUSTER="true")
        try:
            await run.wait_idle(120)  # accounts opened before their traffic is read
            for batch in rounds:
                await run.send_all(batch)
            await run.wait_idle(120)
            # Ready: among others, every primary answers a PING.
            assert (await worker.get("/ready"))[0] == 200, worker.tail()
            assert worker.stop() == 0, worker.tail()
        finally:
            worker.kill()
        assert '"cluster": true' in worker.output or '"cluster":true' in worker.output
        assert vars(await tally(run, balances, ids)) == {**NOTHING_WRONG, "republished": 0}
        # Where the data is: each primary holds the watermarks of the slots it serves.
        serving = owners(redis_cluster, run.keys)
        assert len(set(serving.values())) == 3
        for slot, node in serving.items():
            assert redis_cluster.command(node, "EXISTS", run.keys.watermark(slot)) == 1, slot


async def test_scripts_are_loaded_again_when_one_primary_lost_them(
    redis_cluster: Cluster, wide_broker: str
) -> None:
    async with started_run(wide_broker, redis_cluster.url, PARTITIONS) as run:
        accounts = await open_accounts_per_slot(run, "n", 1)
        rounds, balances, ids = traffic(run, accounts, rounds=3)
        async with running(run.settings) as rt:
            await run.wait_idle(60)
            loads = rt.store.scripts.loads
            # As a replica promoted by a failover: one primary has no scripts, the others do.
            forgetful = owners(redis_cluster, run.keys)[0]
            assert redis_cluster.command(forgetful, "SCRIPT", "FLUSH") == "OK"
            for batch in rounds:
                await run.send_all(batch)
            await run.wait_idle(60)
            assert rt.store.scripts.loads == loads + 1
            assert rt.metrics.errors.labels("batch")._value.get() == 0
        assert vars(await tally(run, balances, ids)) == {**NOTHING_WRONG, "republished": 0}


async def test_a_slot_moved_to_another_primary_is_followed(
    redis_cluster: Cluster, wide_broker: str
) -> None:
    async with started_run(wide_broker, redis_cluster.url, PARTITIONS) as run:
        accounts = await open_accounts_per_slot(run, "m", 1)
        rounds, balances, ids = traffic(run, accounts, rounds=6)
        hash_slot = tag_slot(tag_of(run.keys, 0))
        source = redis_cluster.owner(hash_slot)
        target = next(n for n in set(owners(redis_cluster, run.keys).values()) if n is not source)
        # No ticker and no idle check: the slot moves while the worker sends nothing into
        # it (README: a slot holding charger's keys moves only while no script writes to
        # it), and the first command to reach the old primary after it is the stream's.
        quiet = run.settings_with(tick_ms=0, watermark_check_s=3600)
        try:
            async with running(quiet) as rt:
                assert isinstance(rt.redis, RedisCluster)
                await run.wait_idle(60)  # accounts opened before their traffic is read
                for batch in rounds[:3]:
                    await run.send_all(batch)
                await run.wait_idle(60)
                await asyncio.to_thread(redis_cluster.move_slot, hash_slot, target)
                # The worker's slot map still names the old primary, which answers MOVED.
                known = rt.redis.nodes_manager.get_node_from_slot(hash_slot)
                assert known.port == port_of(source)
                for batch in rounds[3:]:
                    await run.send_all(batch)
                await run.wait_idle(60)
                known = rt.redis.nodes_manager.get_node_from_slot(hash_slot)
                assert known.port == port_of(target)
                assert redis_cluster.command(target, "EXISTS", run.keys.watermark(0)) == 1
                assert rt.metrics.errors.labels("batch")._value.get() == 0
        finally:
            if redis_cluster.owner(hash_slot) is not source:  # for the tests after this one
                await asyncio.to_thread(redis_cluster.move_slot, hash_slot, source)
        assert vars(await tally(run, balances, ids)) == {**NOTHING_WRONG, "republished": 0}


async def test_the_deploy_acl_user_charges_on_a_cluster(
    redis_cluster: Cluster, wide_broker: str
) -> None:
    async with started_run(wide_broker, redis_cluster.url, PARTITIONS) as run:
        user = f"charger{run.uid}"
        rules = parse(render(run.settings.redis_prefix))[WORKER_USER].rules
        nodes = redis_cluster.alive()
        for node in nodes:  # ACLs are per node: a cluster does not share them
            assert redis_cluster.command(node, "ACL", "SETUSER", user, "reset", *rules) == "OK"
        try:
            settings = run.settings_with(redis_username=user, redis_password=worker_password())
            accounts = await open_accounts_per_slot(run, "u", 1)
            rounds, balances, ids = traffic(run, accounts, rounds=3)
            async with running(settings) as rt:
                await run.wait_idle(60)
                for batch in rounds:
                    await run.send_all(batch)
                await run.wait_idle(60)
                assert rt.metrics.errors.labels("batch")._value.get() == 0
            refused = [
                entry
                for node in nodes
                for entry in cast(list[Any], redis_cluster.command(node, "ACL", "LOG"))
                if user in entry
            ]
            assert refused == []
        finally:
            for node in nodes:
                redis_cluster.command(node, "ACL", "DELUSER", user)
        assert vars(await tally(run, balances, ids)) == {**NOTHING_WRONG, "republished": 0}


async def test_the_api_opens_its_connections_to_every_primary(redis_cluster: Cluster) -> None:
    """charger api fills its pools before serving (charger.api.accounts): on a Cluster, the
    pool of every primary, since an account may live on any of them."""
    primaries = redis_cluster.nodes[: redis_cluster.primaries]

    def clients() -> list[int]:
        counts = []
        for node in primaries:
            admin = redis_cluster.client(node)
            try:
                counts.append(int(admin.info("clients")["connected_clients"]))
            finally:
                admin.close()
        return counts

    before = clients()
    client = redis_for(redis_cluster.url)
    try:
        reader = AccountReader(client, Keys("ch", PARTITIONS), concurrency=8)
        await reader.connect()
        during = clients()
    finally:
        await client.aclose()
    assert all(now - then >= reader.concurrency for then, now in zip(before, during, strict=True))
