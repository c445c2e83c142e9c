"""The benchmark's pure helpers: percentiles, ratios, the report's shape and its targets."""

from __future__ import annotations

from typing import Any

import pytest

from charger_tools.bench.report import (
    REQUIRED,
    TICK_KEYS,
    build_report,
    check_targets,
    latency_summary,
    missing,
    percentile,
    rate,
    ratio,
)


# ---- percentile (nearest rank) ----
def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1


def test_percentile_does_not_interpolate_and_ignores_order() -> None:
    assert percentile([30.0, 10.0, 20.0, 40.0], 50) == 20.0
    assert percentile([5.0, 1.0], 99) == 5.0
    assert percentile([7.5], 1) == 7.5


def test_percentile_p99_of_a_long_tail_is_the_tail() -> None:
    values = [1.0] * 98 + [500.0, 900.0]
    assert percentile(values, 50) == 1.0
    assert percentile(values, 99) == 500.0


def test_percentile_of_nothing_and_out_of_range() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_rounds_and_counts() -> None:
    s = latency_summary([1.04, 2.0, 3.0, 100.0])
    assert s == {"p50": 2.0, "p90": 100.0, "p99": 100.0, "max": 100.0, "samples": 4}
    assert latency_summary([])["p99"] is None


# ---- ratio maths ----
def test_rate_and_ratio() -> None:
    assert rate(200_000, 4.0) == 50_000.0
    assert rate(10, 0.0) is None
    assert ratio(45_000.0, 5_000.0) == 9.0
    assert ratio(2.0, 3.0) == 0.67
    assert ratio(None, 5.0) is None
    assert ratio(5.0, None) is None
    assert ratio(5.0, 0.0) is None


# ---- report ----
def _runs() -> dict[str, dict[str, Any]]:
    return {
        "charger": {"events_per_s": 42_000.0, "rss_mb": 120.5, "events_per_cpu_s": 50_000.0},
        "faust_agent": {
            "events_per_s": 2_000.0,
            "events": 60_000,
            "capped": True,
            "events_per_cpu_s": 4_000.0,
        },
        "limit": {"events_per_s": 56_000.0},
    }


def _tick() -> dict[str, Any]:
    tick: dict[str, Any] = {k: 1.0 for k in TICK_KEYS}
    tick.update(cpu_share_worker=0.05, cpu_share_redis=0.3, ticks=300)
    tick["memory"] = {"bytes_per_account": 700, "bytes_per_active_call": 600}
    return tick


def _report(**over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "events": 200_000,
        "runs": _runs(),
        "latency": {"latency_ms": {"p50": 9.0, "p99": 40.0}, "rate_per_s": 5000},
        "tick": _tick(),
        "settings": {"batch_max_records": 5000},
        "nproc": 2,
    }
    args.update(over)
    return build_report(**args)


def test_report_has_every_required_key_and_the_headline_maths() -> None:
    r = _report()
    assert missing(r) == []
    assert all(k in r for k in REQUIRED)
    assert r["events_per_s"] == {"charger": 42_000.0, "faust_agent": 2_000.0, "limit": 56_000.0}
    assert r["ratio_vs_faust"] == 21.0
    assert r["ratio_vs_limit"] == 0.75
    assert r["ratio_vs_faust_per_cpu"] == 12.5
    assert r["faust_agent_events"] == 60_000
    assert r["faust_agent_capped"] is True
    assert r["worker_rss_mb"] == 120.5
    assert r["redis_bytes_per_account"] == 700
    assert r["redis_bytes_per_active_call"] == 600
    assert r["latency_ms"] == {"p50": 9.0, "p99": 40.0}
    assert r["tick"]["ticks"] == 300
    assert "memory" not in r["tick"]
    assert r["runs"]["latency"] == {"rate_per_s": 5000}


def test_report_of_a_subset_keeps_its_shape_with_nulls() -> None:
    r = _report(runs={"limit": {"events_per_s": 50_000.0}}, latency=None, tick=None)
    assert missing(r) == []
    assert r["events_per_s"]["charger"] is None
    assert r["ratio_vs_limit"] is None
    assert r["latency_ms"] is None and r["tick"] is None
    assert r["redis_bytes_per_active_call"] is None
    assert r["targets"]["charger_events_per_s"]["met"] is None


def test_missing_names_what_a_broken_report_lacks() -> None:
    r = _report()
    del r["nproc"]
    r["latency_ms"] = {"p50": 1.0}
    del r["tick"]["cpu_share_redis"]
    del r["events_per_s"]["limit"]
    gaps = missing(r)
    assert "nproc" in gaps
    assert "latency_ms.{p50,p99}" in gaps
    assert "tick.cpu_share_redis" in gaps
    assert "events_per_s.{charger,faust_agent,limit}" in gaps


def test_targets_are_judged_in_the_right_direction() -> None:
    t = check_targets(_report())
    assert t["charger_events_per_s"] == {"value": 42_000.0, "target": ">= 40000", "met": True}
    assert t["ratio_vs_faust"]["met"] is True
    assert t["ratio_vs_limit"]["met"] is True
    assert t["latency_p99_ms"]["met"] is True
    assert t["tick_cpu_share_worker"]["met"] is True
    assert t["tick_cpu_share_redis"]["met"] is False  # 0.3 > 0.2
    assert t["worker_rss_mb"]["met"] is True
    slow = _report(runs={**_runs(), "charger": {"events_per_s": 8_000.0, "rss_mb": 400.0}})
    t = slow["targets"]
    assert t["charger_events_per_s"]["met"] is False
    assert t["ratio_vs_faust"]["value"] == 4.0 and t["ratio_vs_faust"]["met"] is False
    assert t["ratio_vs_limit"]["met"] is False
    assert t["worker_rss_mb"]["met"] is False


# ---- the cost of CHARGER_REDIS_MIN_REPLICAS ----
def test_the_replicated_run_is_set_against_the_runs_without_a_replica() -> None:
    replicated = {
        "min_replicas": 1,
        "throughput": {"events_per_s": 9000.0},
        "latency": {"latency_ms": {"p50": 20.0, "p99": 61.5}},
    }
    report = build_report(
        events=1000,
        runs={"charger": {"events_per_s": 12000.0}},
        latency={"latency_ms": {"p50": 15.0, "p99": 40.0}},
        tick=None,
        settings={},
        nproc=2,
        replicated=replicated,
    )
    assert report["replicated"] == {
        "min_replicas": 1,
        "events_per_s": {"without": 12000.0, "with": 9000.0, "ratio": 0.75},
        "latency_p99_ms": {"without": 40.0, "with": 61.5, "added": 21.5},
        "latency_ms_with": {"p50": 20.0, "p99": 61.5},
    }
    assert report["runs"]["charger_replicated"] == replicated
    assert missing(report) == []
    # Without the runs it is compared with, the comparison says so instead of guessing.
    alone = build_report(
        events=1000, runs={}, latency=None, tick=None, settings={}, nproc=2, replicated=replicated
    )
    assert alone["replicated"]["events_per_s"]["ratio"] is None
    assert alone["replicated"]["latency_p99_ms"]["added"] is None
    assert "replicated" not in build_report(
        events=1000, runs={}, latency=None, tick=None, settings={}, nproc=2
    )
