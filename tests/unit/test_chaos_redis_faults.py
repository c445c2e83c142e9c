"""Planning the chaos run's Redis faults: which Redis a run stands on, and when it fails over."""

from __future__ import annotations

import pytest

from charger_tools.chaos import parse
from charger_tools.chaos.backends import ClusterRedis
from charger_tools.chaos.run import topic_marks
from charger_tools.chaos.workload import CLUSTER_PARTITIONS, ChaosConfig, fault_plan
from charger_topics import names


def actions(cfg: ChaosConfig, action: str) -> list[float]:
    return [f.at for f in fault_plan(cfg).faults if f.action == action]


def test_the_redis_faults_choose_the_redis_a_run_stands_on() -> None:
    assert ChaosConfig().redis_mode == "single"
    assert ChaosConfig(redis_rollbacks=2).redis_mode == "single"
    assert ChaosConfig(redis_failovers=1).redis_mode == "sentinel"
    assert ChaosConfig(redis_cluster=True).redis_mode == "cluster"
    assert ChaosConfig(redis_cluster=True, redis_failovers=2).redis_mode == "cluster"


def test_only_a_single_server_is_restarted_in_place() -> None:
    assert actions(ChaosConfig(), "redis_restart")
    assert actions(ChaosConfig(redis_failovers=2), "redis_restart") == []
    assert actions(ChaosConfig(redis_cluster=True), "redis_restart") == []
    assert actions(ChaosConfig(), "redis_failover") == []


@pytest.mark.parametrize("failovers", [1, 2, 3, 5])
def test_failovers_are_spread_one_per_stretch_of_the_stream(failovers: int) -> None:
    cfg = ChaosConfig(events=100_000, kills=10, redis_failovers=failovers)
    points = actions(cfg, "redis_failover")
    assert len(points) == failovers
    span = 0.8 / failovers
    for n, at in enumerate(points):
        # Well inside its own stretch of 0.1..0.9: never two bunched at a boundary.
        assert 0.1 + span * (n + 0.3) <= at <= 0.1 + span * (n + 0.7)
    assert points == sorted(points)


def test_rollbacks_and_failovers_go_together_and_stay_deterministic() -> None:
    cfg = ChaosConfig(events=100_000, kills=10, redis_rollbacks=2, redis_failovers=2)
    plan = fault_plan(cfg)
    assert plan.faults == fault_plan(cfg).faults
    assert [f.at for f in plan.faults] == sorted(f.at for f in plan.faults)
    remembered = actions(cfg, "redis_remember")
    rolled_back = actions(cfg, "redis_rollback")
    assert len(remembered) == len(rolled_back) == 2
    assert all(r < b for r, b in zip(remembered, rolled_back, strict=True))
    assert len(actions(cfg, "redis_failover")) == 2
    assert len(actions(cfg, "kill")) == 10


def test_fault_counts_may_not_be_negative() -> None:
    with pytest.raises(ValueError, match="Redis fault counts"):
        ChaosConfig(redis_failovers=-1)


def test_the_command_line_takes_a_bare_failover_flag_as_one() -> None:
    cfg, _, _ = parse(["--redis-failover"])
    assert (cfg.redis_failovers, cfg.redis_mode) == (1, "sentinel")
    cfg, path, _ = parse(["--redis-failover", "2", "--redis-rollback", "--json", "r.json"])
    assert (cfg.redis_failovers, cfg.redis_rollbacks, path) == (2, 1, "r.json")
    cfg, _, _ = parse(["--redis-cluster", "--redis-failover", "2"])
    assert (cfg.redis_mode, cfg.redis_failovers) == ("cluster", 2)
    cfg, _, broker = parse([])
    assert (cfg.redis_mode, cfg.redis_failovers, cfg.redis_cluster) == ("single", 0, False)
    assert broker == "tansu"
    cfg, _, broker = parse(["--broker", "kafka-cluster", "--broker-kills", "3"])
    assert (broker, cfg.broker_kills) == ("kafka-cluster", 3)
    with pytest.raises(SystemExit):
        parse(["--broker-kills", "1"])  # kills need a cluster to survive them


def test_a_cluster_run_spreads_more_partitions_than_primaries() -> None:
    assert ClusterRedis.partitions == CLUSTER_PARTITIONS
    assert CLUSTER_PARTITIONS > 3 and CLUSTER_PARTITIONS % 3 == 0
    marks = topic_marks(CLUSTER_PARTITIONS)
    for topic in names.CO_PARTITIONED:
        assert sum(tp.topic == topic for tp in marks) == CLUSTER_PARTITIONS
    # A topic the contract pins to one partition keeps it (rate plans are read whole).
    assert sum(tp.topic == names.RATE_PLANS for tp in marks) == 1
