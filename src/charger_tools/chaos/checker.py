"""The independent checker: what was sent against what the ledger topic and Redis show.

It trusts nothing the worker says about itself. From the records the run produced it
knows which events were valid and what effect each must leave; from the output topics
and Redis it finds what happened. The invariants:

- lost: a valid event with no effect (no ledger entry, no state in Redis, no DLQ record);
- duplicated: an effect applied twice — one ledger id carrying two different payloads
  (the relay may republish an entry byte for byte; readers dedupe those by id). An entry
  re-created after Redis forgot it may carry another `balance_after_micros` when the
  account's forgotten records came from two topics (and a session_expired entry the time
  it was issued again): those are counted apart (`recreated_other_balance`), and a
  double application still shows as a mismatched account;
- mismatched_accounts: the sum of an account's ledger amounts differs from its balance;
- missed_cutoffs: a cohort call that outlived its money but got no `call.cutoff`;
- fees: every period the subscriptions had due charged once (`scheduled_missed`,
  `periods_charged_twice`), and every `fee.charged` with exactly one result that agrees
  with the ledger (`fee_results_wrong`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from charger.events.timefmt import parse_time_ms
from charger_tools.bench.report import percentile
from charger_tools.chaos.workload import CohortCall
from charger_topics import names

# Event types whose effect is a ledger entry carrying the event's id as its source.
LEDGER_TYPES = frozenset(
    {
        "sms.sent",
        "sms.received",
        "call.attempt",
        "call.ended",
        "balance.credited",
        "balance.adjusted",
    }
)


@dataclass
class Expected:
    """A valid event the run sent, reduced to what its effect is looked up by."""

    id: str
    type: str
    account: str
    value: bytes
    call_id: str = ""
    request_id: str = ""
    status: str = ""


def expectations(sent: list[bytes]) -> list[Expected]:
    """One entry per distinct valid event (producer resends share the id and bytes)."""
    out: dict[str, Expected] = {}
    for value in sent:
        doc = orjson.loads(value)
        out.setdefault(
            doc["id"],
            Expected(
                doc["id"],
                doc["type"],
                doc["account"],
                value,
                call_id=doc.get("call_id", ""),
                request_id=doc.get("request_id", ""),
                status=doc.get("status", ""),
            ),
        )
    return list(out.values())


@dataclass
class Observed:
    """What the outputs and Redis show after the run."""

    ledger: list[bytes] = field(default_factory=list)
    charge_results: list[bytes] = field(default_factory=list)  # fee.applied / fee.refused
    dlq: list[tuple[bytes, str]] = field(default_factory=list)  # original bytes, reason
    commands: list[tuple[bytes, int]] = field(default_factory=list)  # value, broker time
    balances: dict[str, int | None] = field(default_factory=dict)  # None: no account
    held: dict[str, int] = field(default_factory=dict)
    call_states: dict[tuple[str, str], str | None] = field(default_factory=dict)
    request_states: dict[tuple[str, str], str | None] = field(default_factory=dict)
    active_sessions: int = 0


def check(
    expected: list[Expected],
    cohort: list[CohortCall],
    seen: Observed,
    scheduled_ids: set[str] | None = None,
) -> dict[str, Any]:
    """The invariants and the figures behind them; `scheduled_ids` are the ledger ids the
    subscriptions' schedule must have made, once each."""
    by_id: dict[str, set[bytes]] = defaultdict(set)
    effects: dict[str, set[bytes]] = defaultdict(set)
    entries: dict[str, dict[str, Any]] = {}
    for raw in seen.ledger:
        doc = orjson.loads(raw)
        by_id[doc["id"]].add(raw)
        effects[doc["id"]].add(_effect(doc))
        entries.setdefault(doc["id"], doc)
    duplicated = sorted(i for i, payloads in effects.items() if len(payloads) > 1)
    other_balance = sum(1 for i, payloads in by_id.items() if len(payloads) > len(effects[i]))
    sources = {d["source_event_id"] for d in entries.values()}
    dlq_values = {value for value, _ in seen.dlq}

    results: dict[str, set[str]] = defaultdict(set)  # fee id -> result types published
    for raw in seen.charge_results:
        doc = orjson.loads(raw)
        results[doc["fee_id"]].add(doc["type"])
    lost: list[str] = []
    fee_results_wrong: list[str] = []
    for e in expected:
        if e.value in dlq_values:
            continue
        if e.type in LEDGER_TYPES or (e.type == "recharge.result" and e.status == "succeeded"):
            ok = e.id in sources
        elif e.type == "call.started":
            ok = seen.call_states.get((e.account, e.call_id)) is not None
        elif e.type == "recharge.result":
            ok = seen.request_states.get((e.account, e.request_id)) == e.status
        elif e.type == "fee.charged":
            # Charged (its ledger entry) or refused for want of funds: one result either way.
            charged = e.id in sources
            ok = charged or results.get(e.id) == {"fee.refused"}
            if results.get(e.id) != ({"fee.applied"} if charged else {"fee.refused"}):
                fee_results_wrong.append(e.id)
        else:  # account.upserted
            ok = seen.balances.get(e.account) is not None
        if not ok:
            lost.append(f"{e.type}:{e.id}")

    sums: Counter[str] = Counter()
    for d in entries.values():
        sums[d["account"]] += d["amount_micros"]
    mismatched = sorted(a for a, bal in seen.balances.items() if bal is not None and sums[a] != bal)
    mismatched += sorted(a for a in sums if a not in seen.balances)

    cutoffs: dict[str, dict[str, Any]] = {}
    late: list[int] = []
    for raw, ts in seen.commands:
        doc = orjson.loads(raw)
        if doc["type"] == "call.cutoff" and doc["id"] not in cutoffs:
            cutoffs[doc["id"]] = doc
            late.append(ts - parse_time_ms(doc["cutoff_at"]))
    cut_calls = {(d["account"], d["call_id"]): d for d in cutoffs.values()}
    starts = {e.call_id: e.value for e in expected if e.type == "call.started"}
    missed, spurious, off_ms = [], [], []
    for c in cohort:
        doc = cut_calls.get((c.account, c.call_id))
        if c.doomed and doc is None:
            missed.append(c.call_id)
        elif c.doomed and doc is not None:
            answer = parse_time_ms(orjson.loads(starts[c.call_id])["time"])
            off_ms.append(abs(parse_time_ms(doc["cutoff_at"]) - (answer + c.affordable_ms)))
        elif doc is not None:
            spurious.append(c.call_id)

    scheduled = scheduled_ids or set()
    periods = Counter(
        (d["account"], d["subscription_id"], d["period_start"])
        for d in entries.values()
        if "subscription_id" in d
    )
    fees_made = {i for i, d in entries.items() if "subscription_id" in d}
    dlq_reasons = Counter(reason for _, reason in seen.dlq)
    return {
        "lost": len(lost),
        "duplicated": len(duplicated),
        "mismatched_accounts": len(mismatched),
        "missed_cutoffs": len(missed),
        "fees": {
            "scheduled_expected": len(scheduled),
            "scheduled_missed": len(scheduled - fees_made),
            "scheduled_unexpected": len(fees_made - scheduled),
            "periods_charged_twice": sum(n > 1 for n in periods.values()),
            "fee_results_wrong": len(fee_results_wrong),
            "charge_results": len(seen.charge_results),
        },
        "dlq": len(seen.dlq),
        "dlq_by_reason": dict(sorted(dlq_reasons.items())),
        "valid_events": len(expected),
        "ledger_entries": len(entries),
        "ledger_republished": len(seen.ledger) - len(entries),
        "recreated_other_balance": other_balance,
        "accounts": sum(1 for b in seen.balances.values() if b is not None),
        "leaked_holds": sum(1 for h in seen.held.values() if h != 0),
        "active_sessions_left": seen.active_sessions,
        "cutoffs": {
            "sent": len(cutoffs),
            "cohort_doomed": sum(c.doomed for c in cohort),
            "cohort_safe": sum(not c.doomed for c in cohort),
            "cohort_cut": sum(c.doomed for c in cohort) - len(missed),
            "cutoff_at_error_ms_max": max(off_ms, default=None),
            "spurious_cohort_cutoffs": len(spurious),
            "lateness_ms_p50": percentile(late, 50),
            "lateness_ms_p99": percentile(late, 99),
            "lateness_ms_max": max(late, default=None),
        },
        "examples": {
            "lost": lost[:10],
            "duplicated": duplicated[:10],
            "mismatched_accounts": mismatched[:10],
            "missed_cutoffs": missed[:10],
            "scheduled_fees_missed": sorted(scheduled - fees_made)[:10],
            "fee_results_wrong": fee_results_wrong[:10],
            "spurious_cutoffs": spurious[:10],
        },
    }


def _effect(doc: dict[str, Any]) -> bytes:
    """What a ledger entry did, without what a re-creation may legitimately change."""
    kept = {k: v for k, v in doc.items() if k != "balance_after_micros"}
    if doc.get("kind") == "session_expired":
        kept.pop("time", None)
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


# Topics the checker reads back, from the offsets they had when the run began.
READ_BACK = (names.LEDGER, names.DLQ, names.TELEPHONY_COMMANDS, names.CHARGE_RESULTS)
