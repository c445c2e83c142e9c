"""The dashboard and the alert rules work against a real Prometheus scraping a real worker.

A `charger worker` runs on the embedded broker and Redis under simulated switch traffic, and
a `charger ledger-sink` stores its ledger in PostgreSQL; a Prometheus (Debian's
`prometheus` package: `make test` installs it) scrapes both /metrics every second and
loads deploy/prometheus/alerts.yml. Then every PromQL expression of the
Grafana dashboard and of the alert rules is evaluated through the HTTP API: none may fail,
and each must return series for the metrics it names. Alert expressions are evaluated
whole (they may be empty: nothing is wrong) and then each of their `query > threshold`
operands without its threshold, which must return series.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from charger.metrics import Metrics, SinkMetrics
from charger_tools.embedded import free_port
from charger_tools.processes import stop_process
from charger_tools.simulate import SimConfig
from charger_tools.simulate.produce import run_switch
from tests.kit.api import api_process, bearer
from tests.kit.harness import Run
from tests.kit.http import answers_ok, get, get_async
from tests.kit.ledger_sink import LedgerTopic, SinkProcess, sink_env
from tests.kit.waits import until
from tests.kit.worker import spawn_worker, stop_worker

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "charger.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = shutil.which("prometheus")

# Grafana's interval variables, as Grafana would fill them in for a short time range.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
METRIC = re.compile(r"\b(charger_[a-z0-9_]+|up)\b(?!\s*\()")
COMPARISON = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?-?[0-9.]+(?:e[+-]?\d+)?\s*$")
SET_OP = re.compile(r"(and|or|unless)(\s+(?:on|ignoring)\s*\([^)]*\))?", re.IGNORECASE)


def _need_prometheus() -> str:
    if PROMETHEUS is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed: `make test` installs Debian's package")
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    return PROMETHEUS


# ---- expressions ----
def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every target, Grafana variables filled in."""
    dash = json.loads(DASHBOARD.read_text())
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                expr = t["expr"]
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                assert "$" not in expr, f"unknown variable in {expr!r}"
                found.append((p["title"], expr))

    walk(dash["panels"])
    return found


def alert_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [
        (rule["alert"], " ".join(rule["expr"].split()))
        for group in doc["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def split_top_level(expr: str) -> list[str]:
    """The operands of top-level and/or/unless (with their on/ignoring modifiers)."""
    parts, depth, start, i, quote = [], 0, 0, 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] == "_")):
            m = SET_OP.match(expr, i)
            if m and (m.end() == len(expr) or not expr[m.end()].isalnum()):
                parts.append(expr[start:i])
                start = i = m.end()
                continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts]


def without_threshold(operand: str) -> str:
    stripped = COMPARISON.sub("", operand)
    assert stripped != operand, f"alert operand has no `> number` threshold: {operand!r}"
    return stripped


def test_the_threshold_stripper_understands_the_rules_shape() -> None:
    expr = (
        "sum by (instance) (charger_consumer_lag) > 0 and on (instance) "
        'time() - charger_last_processed_timestamp_seconds{a="x and y"} > 120'
    )
    assert [without_threshold(p) for p in split_top_level(expr)] == [
        "sum by (instance) (charger_consumer_lag)",
        'time() - charger_last_processed_timestamp_seconds{a="x and y"}',
    ]
    assert split_top_level("rate(band_total[5m]) >= 3") == ["rate(band_total[5m]) >= 3"]
    assert len(dashboard_exprs()) >= 20
    assert len(alert_exprs()) >= 6


# ---- processes ----
async def wait_ready(url: str, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    await until(
        lambda: answers_ok(url), f"{what} not ready at {url}", timeout, interval=0.5, process=proc
    )


class Prometheus:
    """A Prometheus process with the alert rules, scraping the given targets every second."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.base = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, targets: list[str], api_targets: list[str] | None = None) -> None:
        port = free_port()
        cfg = self.workdir / "prometheus.yml"
        scrape = [{"job_name": "charger", "static_configs": [{"targets": targets}]}]
        if api_targets:
            scrape.append({"job_name": "charger-api", "static_configs": [{"targets": api_targets}]})
        cfg.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(ALERTS)],
                    "scrape_configs": scrape,
                }
            )
        )
        with open(self.workdir / "prometheus.log", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={cfg}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.base = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)

    def query(self, expr: str) -> dict[str, Any]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = get(url, 10.0)
        doc: dict[str, Any] = orjson.loads(body) if body else {"status": "error", "http": status}
        return doc

    def series(self, expr: str) -> list[dict[str, Any]]:
        doc = self.query(expr)
        assert doc.get("status") == "success", f"{expr!r}: {doc}"
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
async def worker(run: Run, workdir: Path) -> AsyncIterator[tuple[str, Path]]:
    port = free_port()
    log_path = workdir / "worker.log"
    with open(log_path, "wb") as out, open(workdir / "worker.err", "wb") as err:
        # Its own log level only: stdout must hold the JSON log lines alone.
        proc = spawn_worker(
            run,
            port,
            log_level=None,
            stdout=out,
            stderr=err,
            env={"CHARGER_LOG_LEVEL": "INFO"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        # /owns, not /ready: the lag series the alerts query exist once partitions are held.
        await wait_ready(f"{base}/owns", 90, "the worker", proc)
        yield base, log_path
    finally:
        code = await asyncio.to_thread(stop_worker, proc)
        assert code == 0, (workdir / "worker.err").read_text()[-3000:]


@pytest.fixture
async def api(run: Run, workdir: Path) -> AsyncIterator[str]:
    """`charger api` on the run's Redis (no ledger store: statements answer 503)."""
    (workdir / "api").mkdir()
    async with api_process(run.redis_url, run.settings.redis_prefix, workdir / "api") as proc:
        yield proc.url


@pytest.fixture
def prometheus(workdir: Path) -> Iterator[Prometheus]:
    prom = Prometheus(_need_prometheus(), workdir)
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture
async def ledger_sink(run: Run, database: str) -> AsyncIterator[str]:
    """A ledger sink storing the run's ledger; its base URL."""
    topic = await LedgerTopic.at_end(run.bootstrap)
    sink = SinkProcess(sink_env(run.bootstrap, database, topic.group_id))
    try:
        await sink.wait_ready()
        yield f"http://127.0.0.1:{sink.web_port}"
    finally:
        code = await asyncio.to_thread(sink.stop)
        assert code == 0, sink.tail()


async def test_dashboard_and_alert_queries_return_series_from_a_live_worker(
    prometheus: Prometheus, run: Run, worker: tuple[str, Path], ledger_sink: str, api: str
) -> None:
    base, log_path = worker
    prom = prometheus
    prom.start(
        [base.removeprefix("http://"), ledger_sink.removeprefix("http://")],
        [api.removeprefix("http://")],
    )
    assert prom.proc is not None
    await wait_ready(f"{prom.base}/-/ready", 60, "prometheus", prom.proc)

    # Simulated switch on the wall clock: calls hold credit, small accounts get cut off.
    cfg = SimConfig(
        accounts=40,
        seed=11,
        start_ms=time.time_ns() // 1_000_000,
        call_rate_per_s=12.0,
        sms_rate_per_s=6.0,
        ring_through_rate_per_s=2.0,
        malformed_fraction=0.03,
    )
    totals = await run_switch(run.bootstrap, cfg, seconds=15.0, with_accounts=True)
    assert totals
    # Requests of the API, so that its series exist.
    async with httpx.AsyncClient(base_url=api, headers=bearer()) as client:
        for path in ("/v1/accounts/nobody", "/v1/accounts/nobody/statement"):
            await client.get(path)
        await client.post("/v1/authorize", json={"account": "nobody", "kind": "sms"})

    # Enough scrapes for rate() and deriv() windows, and the rules evaluated a few times.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = prom.series("count_over_time(charger_build_info[1m])")
        if got and float(got[0]["value"][1]) >= 12:
            break
        await asyncio.sleep(1)
    else:
        pytest.fail("Prometheus did not scrape the worker")

    # /metrics, /health, /ready, /owns as an operator sees them.
    status, body = await get_async(f"{base}/metrics")
    assert status == 200
    text = body.decode()
    for family in Metrics().registry.collect():
        if family.name.startswith("charger_"):
            pattern = rf"^# TYPE {family.name}(_total)? {family.type}$"
            assert re.search(pattern, text, re.MULTILINE), family.name
    for path in ("/health", "/ready", "/owns"):
        status, body = await get_async(base + path)
        assert status == 200, (path, body)
    status, body = await get_async(f"{ledger_sink}/metrics")
    assert status == 200
    for family in SinkMetrics().registry.collect():
        if family.name.startswith("charger_"):
            pattern = rf"^# TYPE {family.name}(_total)? {family.type}$"
            assert re.search(pattern, body.decode(), re.MULTILINE), family.name
    for path in ("/health", "/ready"):
        status, body = await get_async(ledger_sink + path)
        assert status == 200, (path, body)

    problems: list[str] = []
    checked: set[str] = set()

    def names_in(expr: str) -> set[str]:
        return {m for m in METRIC.findall(expr)}

    def check_names(where: str, expr: str) -> None:
        for name in names_in(expr) - checked:
            selector = 'up{job="charger"}' if name == "up" else f'{{__name__="{name}"}}'
            if not prom.series(selector):
                problems.append(f"{where}: no series for {name}")
            checked.add(name)

    for title, expr in dashboard_exprs():
        doc = prom.query(expr)
        if doc.get("status") != "success":
            problems.append(f"dashboard {title!r}: {expr!r} failed: {doc}")
            continue
        if not doc["data"]["result"]:
            problems.append(f"dashboard {title!r}: {expr!r} returned no series")
        check_names(f"dashboard {title!r}", expr)

    for alert, expr in alert_exprs():
        doc = prom.query(expr)
        if doc.get("status") != "success":
            problems.append(f"alert {alert}: {expr!r} failed: {doc}")
            continue
        for operand in split_top_level(expr):
            query = without_threshold(operand)
            if query.startswith("absent("):
                # Series only while the targets are gone; with a worker scraped, none.
                if prom.series(query):
                    problems.append(f"alert {alert}: {query!r} fires with a worker scraped")
            elif not prom.series(query):
                problems.append(f"alert {alert}: {query!r} returned no series")
        check_names(f"alert {alert}", expr)

    # The rules Prometheus loaded evaluate without error.
    rules = orjson.loads((await get_async(f"{prom.base}/api/v1/rules"))[1])
    loaded = [r for g in rules["data"]["groups"] for r in g["rules"]]
    assert {r["name"] for r in loaded} == {a for a, _ in alert_exprs()}
    for r in loaded:
        if r["health"] != "ok":
            problems.append(f"rule {r['name']}: {r['health']} {r.get('lastError')}")

    assert not problems, "\n".join(problems)

    # Logs: stdout holds JSON lines only, each with its time, level, logger and message.
    lines = [ln for ln in log_path.read_bytes().splitlines() if ln.strip()]
    assert lines
    for line in lines:
        doc = orjson.loads(line)
        assert {"time", "level", "logger", "message"} <= doc.keys(), doc
    refused = [orjson.loads(ln) for ln in lines if b'"record refused"' in ln]
    assert refused and all("reason" in d and "account" in d for d in refused)
