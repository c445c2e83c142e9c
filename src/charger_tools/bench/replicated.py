"""What CHARGER_REDIS_MIN_REPLICAS=1 costs: the throughput and latency runs once more, with
a replica that must have every batch before it counts (`charger bench --only
charger,latency,charger_replicated` puts both sides in one report).

On the embedded Valkey a replica of it is started here (and stopped after), on the same
machine: its CPU is in the run's `cpu_share` as `replica`. On given servers
(CHARGER_REDIS_URL) the primary must have a replica of its own, or every batch times out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from charger_tools.bench.latency import run_latency
from charger_tools.bench.proc import say
from charger_tools.bench.runs import Env, run_charger
from charger_tools.bench.workload import Workload
from charger_tools.embedded import EmbeddedServer
from charger_tools.topology import start_data_node

MIN_REPLICAS = 1


@contextlib.contextmanager
def replica_of(env: Env) -> Iterator[EmbeddedServer | None]:
    """A replica of the embedded Redis, in sync, for the block; None on given servers."""
    if "redis" not in env.pids:
        yield None
        return
    port = int(env.redis_url.rsplit(":", 1)[1].split("/", 1)[0])
    replica = start_data_node("replica", replica_of=port)
    env.pids["replica"] = replica.pid
    try:
        yield replica
    finally:
        env.pids.pop("replica", None)
        replica.stop()


async def run_replicated(
    env: Env,
    w: Workload,
    batch: tuple[int, int],
    latency: tuple[int, float],
) -> dict[str, Any]:
    """Throughput (as the charger run) and latency (as the latency run, without its broker
    baseline) with every batch waiting for a replica."""
    extra = {"redis_min_replicas": MIN_REPLICAS}
    with replica_of(env) as replica:
        say(f"replica {'started' if replica else 'of the given Redis assumed'}")
        throughput = await run_charger(env, w, *batch, extra=extra)
        say(f"charger, MIN_REPLICAS={MIN_REPLICAS}: {throughput['events_per_s']:,.0f} events/s")
        delays = await run_latency(env, w, *latency, *batch, extra=extra, baseline=False)
        say(f"latency, MIN_REPLICAS={MIN_REPLICAS}: {delays['latency_ms']}")
    return {
        "min_replicas": MIN_REPLICAS,
        "replica": "embedded, same machine" if replica else "the given Redis's own",
        "throughput": throughput,
        "latency": delays,
    }
