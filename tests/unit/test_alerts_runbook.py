"""Every alert links its section of docs/runbook.md, the rules agree on the scrape job's
name, and vanished targets have an alert of their own."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
JOB_MATCHER = re.compile(r"\bjob\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped,
    spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> dict[str, str]:
    """Second-level headings of the runbook by their anchor."""
    headings = re.findall(r"^## (.+)$", RUNBOOK.read_text(), re.M)
    return {anchor(h): h for h in headings}


def runbook_address() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return f"{project['urls']['Source']}/blob/main/docs/runbook.md"


def test_the_anchor_rule_matches_githubs() -> None:
    assert anchor("ChargerDown") == "chargerdown"
    assert anchor("Redis: forgets (a failover)") == "redis-forgets-a-failover"


def test_every_alert_links_a_heading_of_the_runbook_and_every_heading_an_alert() -> None:
    anchors = runbook_anchors()
    linked = set()
    for rule in alert_rules():
        url = rule["annotations"].get("runbook_url")
        assert url, f"{rule['alert']} has no runbook_url"
        address, _, fragment = url.partition("#")
        assert address == runbook_address(), url
        assert fragment in anchors, f"{rule['alert']}: #{fragment} is no heading of the runbook"
        assert anchors[fragment] == rule["alert"], "each alert links its own section"
        linked.add(fragment)
    assert set(anchors) == linked, "a runbook section without its alert"


def test_the_rules_name_the_scrape_job_one_way() -> None:
    matchers = {
        (rule["alert"], m.group(1), m.group(2))
        for rule in alert_rules()
        for m in JOB_MATCHER.finditer(rule["expr"])
    }
    assert {(op, value) for _, op, value in matchers} == {("=~", "charger")}, matchers
    assert {alert for alert, _, _ in matchers} == {"ChargerDown", "ChargerTargetsMissing"}
    # The header documents the regex an operator replaces.
    assert 'job=~"charger"' in ALERTS.read_text().split("groups:")[0]


def test_vanished_targets_have_an_absent_rule() -> None:
    absent = [r for r in alert_rules() if "absent(" in r["expr"]]
    assert [r["alert"] for r in absent] == ["ChargerTargetsMissing"]
    (rule,) = absent
    assert re.fullmatch(r'absent\(up\{job=~"charger"\}\) == 1', rule["expr"].strip())
    assert rule["labels"]["severity"] == "critical"
