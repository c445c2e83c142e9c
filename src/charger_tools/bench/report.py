"""Pure helpers of the benchmark: percentiles, ratios, the report and its targets. No I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

RUNS = ("charger", "faust_agent", "limit")

# What the issue asks for: (report path, comparison, bound).
TARGETS: dict[str, tuple[tuple[str, ...], str, float]] = {
    "charger_events_per_s": (("events_per_s", "charger"), ">=", 40_000),
    "ratio_vs_faust": (("ratio_vs_faust",), ">=", 8),
    "ratio_vs_limit": (("ratio_vs_limit",), ">=", 0.7),
    "latency_p99_ms": (("latency_ms", "p99"), "<=", 50),
    "tick_cpu_share_worker": (("tick", "cpu_share_worker"), "<=", 0.20),
    "tick_cpu_share_redis": (("tick", "cpu_share_redis"), "<=", 0.20),
    "worker_rss_mb": (("worker_rss_mb",), "<=", 300),
}

# Keys every report has (a value is null when its run was left out with --only).
REQUIRED = (
    "events",
    "events_per_s",
    "ratio_vs_faust",
    "ratio_vs_limit",
    "faust_agent_events",
    "latency_ms",
    "tick",
    "worker_rss_mb",
    "redis_bytes_per_account",
    "redis_bytes_per_active_call",
    "settings",
    "nproc",
    "targets",
)
TICK_KEYS = (
    "active_sessions",
    "sessions_held_per_s",
    "redis_calls_per_tick",
    "tick_wall_ms_p50",
    "tick_wall_ms_p99",
    "cpu_share_worker",
    "cpu_share_redis",
)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (the smallest value with `pct`% of values at or below it)."""
    if not values:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def rate(count: int, seconds: float) -> float | None:
    """Events per second, or None when nothing was timed."""
    if seconds <= 0:
        return None
    return round(count / seconds, 1)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """`numerator / denominator` to two decimals; None when either side is missing or zero."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return {
        "p50": r(percentile(values_ms, 50)),
        "p90": r(percentile(values_ms, 90)),
        "p99": r(percentile(values_ms, 99)),
        "max": r(max(values_ms, default=None)),
        "samples": len(values_ms),
    }


def _get(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    cur: Any = doc
    for part in path:
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def check_targets(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with the value reached and whether it is met (None: not measured)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (path, op, bound) in TARGETS.items():
        value = _get(report, path)
        met: bool | None = None
        if isinstance(value, int | float):
            met = value >= bound if op == ">=" else value <= bound
        out[name] = {"value": value, "target": f"{op} {bound:g}", "met": met}
    return out


def replication_cost(
    charger: Mapping[str, Any] | None,
    latency: Mapping[str, Any] | None,
    replicated: Mapping[str, Any],
) -> dict[str, Any]:
    """Throughput and p99 latency with CHARGER_REDIS_MIN_REPLICAS against without (None
    where the run without was left out)."""
    eps_with = _get(replicated, ("throughput", "events_per_s"))
    eps_without = _get(charger or {}, ("events_per_s",))
    p99_with = _get(replicated, ("latency", "latency_ms", "p99"))
    p99_without = _get(latency or {}, ("latency_ms", "p99"))
    added = None
    if isinstance(p99_with, int | float) and isinstance(p99_without, int | float):
        added = round(p99_with - p99_without, 1)
    return {
        "min_replicas": replicated.get("min_replicas"),
        "events_per_s": {
            "without": eps_without,
            "with": eps_with,
            "ratio": ratio(eps_with, eps_without),
        },
        "latency_p99_ms": {"without": p99_without, "with": p99_with, "added": added},
        "latency_ms_with": _get(replicated, ("latency", "latency_ms")),
    }


def build_report(
    *,
    events: int,
    runs: Mapping[str, Mapping[str, Any] | None],
    latency: Mapping[str, Any] | None,
    tick: Mapping[str, Any] | None,
    settings: Mapping[str, Any],
    nproc: int,
    extra: Mapping[str, Any] | None = None,
    replicated: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The benchmark's JSON: headline figures first, each run's details under `runs`."""
    eps = {name: _get(runs.get(name) or {}, ("events_per_s",)) for name in RUNS}
    if runs.get("charger_scaled"):
        # Scale-out: the same path in several processes of one group (not a headline).
        eps["charger_scaled"] = _get(runs["charger_scaled"] or {}, ("events_per_s",))
    faust = runs.get("faust_agent") or {}
    charger = runs.get("charger") or {}
    report: dict[str, Any] = {
        "events": events,
        "events_per_s": eps,
        "ratio_vs_faust": ratio(eps["charger"], eps["faust_agent"]),
        "ratio_vs_limit": ratio(eps["charger"], eps["limit"]),
        # Per CPU second of the consuming process: what each does with the CPU it gets.
        "ratio_vs_faust_per_cpu": ratio(
            charger.get("events_per_cpu_s"), faust.get("events_per_cpu_s")
        ),
        "faust_agent_events": faust.get("events"),
        "faust_agent_capped": faust.get("capped"),
        "latency_ms": dict(latency["latency_ms"]) if latency else None,
        "tick": {k: tick.get(k) for k in (*TICK_KEYS, *tick) if k != "memory"} if tick else None,
        "worker_rss_mb": charger.get("rss_mb"),
        "redis_bytes_per_account": _get(tick or {}, ("memory", "bytes_per_account")),
        "redis_bytes_per_active_call": _get(tick or {}, ("memory", "bytes_per_active_call")),
        "settings": dict(settings),
        "nproc": nproc,
    }
    if replicated:
        report["replicated"] = replication_cost(charger, latency, replicated)
    report["targets"] = check_targets(report)
    details: dict[str, Any] = {name: dict(run) for name, run in runs.items() if run}
    if replicated:
        details["charger_replicated"] = dict(replicated)
    if latency:
        details["latency"] = {k: v for k, v in latency.items() if k != "latency_ms"}
    if tick and "memory" in tick:
        details["redis_memory"] = tick["memory"]
    report["runs"] = details
    if extra:
        report.update(extra)
    return report


def missing(report: Mapping[str, Any]) -> list[str]:
    """Required keys absent from a report (an empty list for a well-formed one)."""
    out = [k for k in REQUIRED if k not in report]
    eps = report.get("events_per_s")
    if not isinstance(eps, Mapping) or any(name not in eps for name in RUNS):
        out.append("events_per_s.{charger,faust_agent,limit}")
    lat = report.get("latency_ms")
    if lat is not None and not (isinstance(lat, Mapping) and "p50" in lat and "p99" in lat):
        out.append("latency_ms.{p50,p99}")
    tick = report.get("tick")
    if tick is not None:
        out += [f"tick.{k}" for k in TICK_KEYS if not isinstance(tick, Mapping) or k not in tick]
    return out
