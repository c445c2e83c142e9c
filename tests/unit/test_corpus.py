"""Every case of the bad-input corpus, through the pure core: its reason and its detail.

Records of the input topics go through the planner (decoder included) between good records,
as the worker would see them in one batch; rate plan records go through the plan book that
already holds a valid version of the plan, which must stay in force.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from charger.charging.planner import Outcome, Planner
from charger.charging.records import AccountInfo, Inbound, Reads
from charger.kafka.plans_reader import PlanBook
from charger.protocol.fields import request_state
from charger.protocol.keys import Keys, slot_of
from charger.protocol.ops import Refuse
from charger.rating import RatePlan, load_plans, plan_from_dict
from charger.runtime import default_plans_path
from charger_topics import names, reasons
from tests.kit.corpus import (
    RP,
    Case,
    Ids,
    cases,
    keyless_cases,
    misplaced_cases,
    prelude,
    sms,
    world,
    world_plans,
)
from tests.kit.ops import planned

IDS = Ids("u1")
CORPUS = cases(IDS) + keyless_cases(IDS) + misplaced_cases(IDS, 8)
PLANS: dict[str, RatePlan] = load_plans(default_plans_path()) | {
    doc["id"]: plan_from_dict(doc) for doc in world_plans(IDS)
}
KEYS = Keys("t", 8)
ROOT = Path(__file__).resolve().parents[2]


def refusals(out: Outcome) -> list[tuple[str, str]]:
    """(reason, detail) of every DLQ op planned, in order."""
    return [(op.reason, op.detail) for op in planned(out, Refuse)]


def plan_batch(
    records: list[tuple[str, str | None, bytes | None]], moved: dict[int, int] | None = None
) -> Outcome:
    """Plan `records` as one batch, each on its key's partition unless `moved` (index ->
    partition) puts it elsewhere."""
    known = {acct: AccountInfo(cur, plan, 0) for acct, (cur, plan) in world(IDS).items()}
    planner = Planner(KEYS, lambda: PLANS, known)
    batch = [
        # on the key's own partition, as the default partitioner puts it
        Inbound(
            topic,
            (moved or {}).get(offset, slot_of(key, KEYS.slots) if key else 0),
            offset,
            None if key is None else key.encode(),
            value,
        )
        for offset, (topic, key, value) in enumerate(records)
    ]
    prepared = planner.prepare(batch)
    done = (KEYS.account_of(IDS.rch), request_state(IDS.request))
    reads = Reads(requests={f: "succeeded" if f == done else None for f in prepared.request_fields})
    return planner.plan(prepared, reads)


def test_the_corpus_has_at_least_thirty_kinds_on_every_input_topic() -> None:
    kinds = [c.kind for c in CORPUS]
    assert len(set(kinds)) == len(kinds) >= 30, Counter(kinds).most_common(3)
    assert {c.topic for c in CORPUS} == {
        names.TELEPHONY_EVENTS,
        names.BILLING_ACCOUNTS,
        names.RECHARGE_RESULTS,
        names.RATE_PLANS,
    }


def test_every_reason_of_the_contract_is_in_the_corpus() -> None:
    assert {c.reason for c in CORPUS} == set(reasons.ALL)


@pytest.mark.parametrize("case", [c for c in CORPUS if c.topic != RP], ids=lambda c: c.kind)
def test_input_case_is_refused_with_its_reason_and_the_batch_goes_on(case: Case) -> None:
    after = (names.TELEPHONY_EVENTS, IDS.good, orjson.dumps(sms(IDS, "after")))
    first = prelude(IDS)
    moved = {} if case.partition is None else {len(first): case.partition}
    out = plan_batch([*first, (case.topic, case.key, case.value), after], moved)
    (refused,) = refusals(out)
    assert refused[0] == case.reason, refused
    assert case.detail in refused[1], refused
    assert out.dlq == {case.reason: 1}
    # The prelude and the good record after the bad one are both charged.
    assert out.results[("sms.sent", "applied")] == 2


@pytest.mark.parametrize("case", [c for c in CORPUS if c.topic == RP], ids=lambda c: c.kind)
def test_plan_case_is_refused_and_the_plan_in_force_stays(case: Case) -> None:
    book = PlanBook(PLANS)
    before = book.current()[IDS.p]
    key = None if case.key is None else case.key.encode()
    bad = book.apply(key, case.value)
    assert bad is not None, case
    assert (bad.reason, case.detail in bad.detail) == (case.reason, True), bad
    assert book.current()[IDS.p] is before
    assert book.refused == 1


def test_a_valid_plan_record_replaces_the_version_in_force() -> None:
    book = PlanBook(PLANS)
    doc: dict[str, Any] = world_plans(IDS)[0] | {"sms": {"outbound_per_segment": "0.02"}}
    record = {"id": "v2", "type": "rate_plan.upserted", "time": "2026-11-22T10:00:00.000Z"}
    assert book.apply(IDS.p.encode(), orjson.dumps(record | {"plan": doc})) is None
    assert book.current()[IDS.p].latest.sms_out_micros == 20_000
    assert book.apply(IDS.p.encode(), None) is None  # withdrawn: the file version is back
    assert book.current()[IDS.p].latest.sms_out_micros == 10_000


# The reasons the worker can give are the contract's: scan the code for every literal.
_RAISED = re.compile(r'(?:Invalid|RatingError)\(\s*"([a-z0-9_]+)"')


def test_every_reason_in_the_code_is_in_the_contract() -> None:
    found: set[str] = set()
    for path in (ROOT / "src" / "charger").rglob("*.py"):
        found.update(_RAISED.findall(path.read_text(encoding="utf-8")))
    assert found, "the scan found nothing: the pattern is stale"
    assert found <= set(reasons.ALL), found - set(reasons.ALL)


def test_readme_lists_every_reason() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.MULTILINE))
    assert rows >= set(reasons.ALL), set(reasons.ALL) - rows
