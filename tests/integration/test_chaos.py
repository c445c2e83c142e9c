"""A small chaos run: worker SIGKILLs, a Redis restart from its AOF, a second worker joining
and leaving, under a stream with duplicates and malformed records — then the checker.

`make chaos` runs the full size (100,000 events, 10 kills); this one keeps `make test` short.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from charger_tools.chaos import INVARIANTS, passed
from charger_tools.chaos.backends import SingleRedis
from charger_tools.chaos.run import run_chaos
from charger_tools.chaos.workload import ChaosConfig
from charger_tools.embedded import EmbeddedServer, start_broker, start_redis


@pytest.fixture
def servers() -> Iterator[tuple[EmbeddedServer, EmbeddedServer]]:
    broker, redis = start_broker(), start_redis(durable=True)
    try:
        yield broker, redis
    finally:
        broker.stop()
        redis.stop()


async def test_small_chaos_run_loses_and_doubles_nothing(
    servers: tuple[EmbeddedServer, EmbeddedServer],
) -> None:
    broker, redis = servers
    cfg = ChaosConfig(events=3000, kills=2, accounts=300, rate_per_s=200.0, seed=5)
    report = await run_chaos(cfg, broker.address, SingleRedis(redis))
    summary = {k: report[k] for k in (*INVARIANTS, "settled", "kills", "faults", "logs")}
    # the faults really struck
    assert report["kills"] == 2, summary
    assert report["redis_restarts"] == 1, summary
    assert {"join", "leave"} <= set(report["faults"]), summary
    assert report["worker_starts"] == 4, summary  # first + 2 restarts + the second worker
    # under a stream that exercises every path
    assert report["events_by_kind"]["duplicate"] > 50, report["events_by_kind"]
    assert report["events_by_kind"]["malformed"] > 0, report["events_by_kind"]
    assert report["ledger_entries"] > 1000, summary
    assert report["dlq"] > 0
    # and nothing was lost, doubled or left uncut
    for key in INVARIANTS:
        assert report[key] == 0, (key, report["examples"], summary)
    assert report["unhealthy_checks"] == {}, summary
    assert passed(report)
    cut = report["cutoffs"]
    assert cut["cohort_cut"] == cut["cohort_doomed"] == 15
    assert cut["spurious_cohort_cutoffs"] == 0
    assert cut["cutoff_at_error_ms_max"] == 0
    assert report["leaked_holds"] == 0 and report["active_sessions_left"] == 0
