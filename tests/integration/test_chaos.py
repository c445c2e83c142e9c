"""A small chaos run: worker SIGKILLs, a Redis restart from its AOF, a second worker joining
and leaving, under a stream with duplicates and malformed records — then the checker.

`make chaos` runs the full size (100,000 events, 10 kills); this one keeps `make test` short.
It runs the command as operators do, and holds it to a progress line at least every 10 s.
So do the runs on a primary and replica behind Sentinels and on a six-node Redis Cluster,
each with one failover and one rollback (in this process).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from charger_tools.chaos import FEE_INVARIANTS, INVARIANTS, passed
from charger_tools.chaos.backends import start_backend
from charger_tools.chaos.run import run_chaos
from charger_tools.chaos.workload import ChaosConfig
from charger_tools.embedded import EmbeddedServer
from charger_tools.kafka_install import KafkaUnavailableError, install_kafka
from tests.kit.brokers import own_broker, test_broker, unavailable
from tests.kit.timed import TimedRun, run_timed


def chaos_command(tmp_path: Path, *options: str) -> tuple[TimedRun, dict[str, Any]]:
    """`charger chaos` as operators run it, on the session's kind of broker: what it wrote
    and when, and its report."""
    broker = test_broker()
    if broker.is_kafka:
        try:
            install_kafka()
        except KafkaUnavailableError as exc:
            unavailable(exc)
    report = tmp_path / "chaos.json"
    argv = ["-m", "charger", "chaos", *options, "--broker", broker.name, "--json", str(report)]
    run = run_timed(argv, timeout=900)
    assert report.exists(), run.text()[-3000:]
    return run, orjson.loads(report.read_bytes())


def test_small_chaos_run_loses_and_doubles_nothing_and_says_how_it_goes(tmp_path: Path) -> None:
    run, report = chaos_command(
        tmp_path,
        *("--events", "3000", "--kills", "2", "--accounts", "300", "--rate", "200"),
        *("--seed", "5"),
    )
    summary = {k: report[k] for k in (*INVARIANTS, "settled", "kills", "faults", "logs")}
    assert run.code == 0, (summary, run.text()[-3000:])
    # a line at least every 10 s from start to exit, through every phase (5 s is the aim)
    silence, ended_by = run.longest_silence()
    assert silence <= 10.0, (silence, ended_by, run.text()[:3000])
    phases = ("starting the broker", "starting Redis", "playing", "settling", "checking")
    for phase in phases:
        assert any(f"chaos: {phase}" in line for _, line in run.lines), phase
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
    # subscriptions charged every period once, every fee got one result that agrees
    fees = report["fees"]
    assert fees["scheduled_expected"] > 20 and fees["charge_results"] > 0, fees
    assert [fees[k] for k in FEE_INVARIANTS] == [0] * len(FEE_INVARIANTS), report["examples"]


def check_failover_run(report: dict[str, Any], mode: str) -> None:
    """Nothing lost, doubled or left uncut, and the Redis faults really struck."""
    summary = {k: report[k] for k in (*INVARIANTS, "settled", "faults", "logs")}
    for key in INVARIANTS:
        assert report[key] == 0, (key, report["examples"], summary)
    assert passed(report), summary
    assert report["redis_mode"] == mode, summary
    assert report["redis_failovers"] == 1, summary
    assert report["redis_rollbacks"] == 1, summary
    assert report["redis_restarts"] == 0, summary  # a failover stands in for the restart
    # A replica promoted and the killed primary back as its replica, in that order.
    [promoted], [back] = report["redis_promotion_seconds"], report["redis_replica_back_seconds"]
    assert 0 < promoted <= back, summary
    killed, _, took_over = report["redis_failed_over"][0].partition(" -> ")
    assert killed and took_over and killed != took_over, summary
    # The Sentinels' (the cluster's) epoch counted at least the failover the run made.
    assert report["redis_unplanned_failovers"] >= 0, summary
    assert report["kills"] == 1 and report["ledger_entries"] > 1000, summary
    assert report["cutoffs"]["spurious_cohort_cutoffs"] == 0, summary


@pytest.fixture
def broker() -> Iterator[EmbeddedServer]:
    broker = own_broker()  # the session's kind
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.parametrize("cluster", [False, True], ids=["sentinel", "cluster"])
async def test_small_chaos_run_with_a_failover_and_a_rollback(
    broker: EmbeddedServer, cluster: bool
) -> None:
    """Sentinels promote the replica of a SIGKILLed primary (the workers with
    CHARGER_REDIS_MIN_REPLICAS=1), or a cluster promotes one primary's replica over 24
    partitions (without replica waits); Redis forgets a few seconds too."""
    cfg = ChaosConfig(
        events=3000,
        kills=1,
        accounts=300,
        rate_per_s=200.0,
        seed=5,
        redis_failovers=1,
        redis_rollbacks=1,
        redis_cluster=cluster,
    )
    backend = start_backend(cfg)
    try:
        report = await run_chaos(cfg, broker.address, backend)
    finally:
        backend.stop()
    check_failover_run(report, "cluster" if cluster else "sentinel")
