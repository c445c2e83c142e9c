"""The charging core: decides what each record does to money. Pure: no I/O.

A batch is planned in two steps around one Redis read round trip:

1. ``prepare`` decodes and validates every record and lists the keys whose state decides
   its fate (seen ids, account settings, call sessions);
2. ``plan`` rates the usage and turns each record into one apply.lua operation, or a DLQ
   record with a specific reason, tracking within-batch state so that two records of the
   same call or id in one batch behave as if they had come in two batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from charger.charging import ledger
from charger.charging.accounts import check_settings
from charger.charging.records import (
    AccountInfo,
    CallState,
    Inbound,
    PlanResult,
    Reads,
    RechargePolicy,
    fingerprint,
)
from charger.charging.refusals import refuse
from charger.charging.scheduling import subscription_from_record
from charger.charging.subscriptions import subscription_problem
from charger.charging.usage import (
    RatingError,
    Usage,
    answered_rate,
    call_rate,
    plan_for,
    rate_call,
    rate_fee,
    rate_record,
)
from charger.events.timefmt import parse_time_ms
from charger.events.tracecontext import TraceMaker
from charger.events.validate import Invalid, decode, too_deep
from charger.protocol.fields import (
    AccountField,
    CallStatus,
    RequestStatus,
    request_number,
    request_state,
)
from charger.protocol.keys import Keys, slot_of
from charger.protocol.ops import (
    ChargeFee,
    ParkEnd,
    RechargeResult,
    Remember,
    SettleCall,
    SlotPlan,
    StartCall,
    UpsertAccount,
    UpsertSubscription,
)
from charger.protocol.ops import Move as MoveOp
from charger.rating import PlanSource
from charger_topics import records

_MAX_PLACES = 1 << 16
# Enum members bound once: a member lookup on its class costs more than the dict lookups
# around it, for every record.
_APPLIED, _IGNORED = PlanResult.APPLIED, PlanResult.IGNORED
_DUPLICATE, _PARKED = PlanResult.DUPLICATE, PlanResult.PARKED
_ACTIVE, _ENDED = CallStatus.ACTIVE, CallStatus.ENDED
_EXPIRED, _PENDING_END = CallStatus.EXPIRED, CallStatus.PENDING_END

# The states of a call each of its events changes; an event finding its call in another
# state moves nothing: a start after the start or the settlement (only a parked end waits
# for it), an end of a call settled or parked before.
_CHANGES = {
    "call.started": frozenset({_PENDING_END}),
    "call.ended": frozenset({_ACTIVE, CallStatus.CUT, _EXPIRED}),
}
CallStates = dict[str, CallState | None]  # call key -> what is known of the call
INPUT_TYPES = {
    topic: frozenset(rt.type for rt in records.types_on(topic)) for topic in ledger.SOURCE_TAGS
}


@dataclass(slots=True)
class Decoded:
    """A valid record with the facts derived from it once."""

    rec: Inbound
    body: dict[str, Any]
    slot: int
    tag: str
    fp: str
    seen_key: str
    account_key: str
    source: str  # rec.source, built once per partition of the batch
    trace: bytes  # its trace context: what it causes is published with it
    call_key: str = ""


class CallEvent(NamedTuple):
    """A call's start or end with what decides it: the account, its plans, the session."""

    decoded: Decoded
    info: AccountInfo
    plans: PlanSource | None
    state: CallState | None


@dataclass(slots=True)
class Prepared:
    decoded: list[Decoded] = field(default_factory=list)
    refused: list[tuple[Inbound, Invalid]] = field(default_factory=list)
    # seen-id keys by slot: one MGET per slot reads them (keys of a slot share a hash tag)
    seen_keys: dict[int, list[str]] = field(default_factory=dict)
    account_keys: dict[str, str] = field(default_factory=dict)  # redis key -> account id
    call_keys: list[str] = field(default_factory=list)
    request_fields: list[tuple[str, str]] = field(default_factory=list)  # (account key, field)


@dataclass(slots=True)
class Outcome:
    """What planning decided, for metrics and tests."""

    plan: SlotPlan
    results: Counter[tuple[str, PlanResult]] = field(default_factory=Counter)  # (type, result)
    dlq: Counter[str] = field(default_factory=Counter)  # reason


class Planner:
    """Turns consumed records into per-slot apply.lua operations."""

    def __init__(
        self,
        keys: Keys,
        plans: Callable[[], Mapping[str, PlanSource]],
        accounts_cache: dict[str, AccountInfo] | None = None,
        policy: RechargePolicy | None = None,
    ) -> None:
        self.keys = keys
        self.plans = plans
        self.policy = policy or RechargePolicy()
        self._requests: dict[tuple[str, str], str | None] = {}
        # Settings of accounts this worker has read or written; only the owner of an
        # account's partition writes them, so the cache stays true while we own it.
        self.accounts: dict[str, AccountInfo] = accounts_cache if accounts_cache is not None else {}
        # account -> (its record key, slot, account key): the same accounts recur.
        self._places: dict[str, tuple[bytes, int, str]] = {}
        # The plans of the batch being planned: each id's versions, chosen by event time.
        self._plans: Mapping[str, PlanSource] = {}
        self._traces = TraceMaker()

    # ---- step 1 ----
    def prepare(self, batch: list[Inbound]) -> Prepared:
        p = Prepared()
        k = self.keys
        places, known, traces = self._places, self.accounts, self._traces.for_record
        refused, decoded, seen_keys = p.refused, p.decoded, p.seen_keys
        last_topic, last_partition, source = "", -1, ""
        for rec in batch:
            topic = rec.topic
            if rec.partition != last_partition or topic != last_topic:
                last_topic, last_partition, source = topic, rec.partition, rec.source
            body = decode(rec.value, INPUT_TYPES.get(topic))
            if isinstance(body, Invalid):
                refused.append((rec, body))
                continue
            account: str = body["account"]
            place = places.get(account) or self._place(account)
            if rec.key != place[0]:
                # Another key puts the record on another partition than its account's:
                # a worker that does not own the account would charge it.
                key = "no key" if rec.key is None else f"key {_shown_key(rec.key)}"
                refused.append(
                    (rec, Invalid("key_mismatch", f"record has {key}, not its account {account!r}"))
                )
                continue
            if rec.partition != place[1]:
                # The right key on another partition (a CRC32 partitioner, say): its
                # account's slot belongs to the worker of the murmur2 partition, whose
                # watermark and cutoffs would not see it.
                refused.append((rec, _wrong_partition(rec.partition, place[1], k.slots)))
                continue
            try:
                fp = fingerprint(body)
            except TypeError:  # orjson re-encodes only so many levels of nesting
                refused.append((rec, too_deep()))
                continue
            _, slot, account_key = place
            tag = ledger.SOURCE_TAGS[topic]
            seen_key = k.seen(slot, tag, body["id"])
            trace = traces(topic, rec.partition, rec.offset, rec.timestamp_ms, rec.headers)
            d = Decoded(rec, body, slot, tag, fp, seen_key, account_key, source, trace)
            in_slot = seen_keys.get(slot)
            if in_slot is None:
                in_slot = seen_keys[slot] = []
            in_slot.append(d.seen_key)
            if account not in known:
                p.account_keys[account_key] = account
            typ = body["type"]
            if typ == "call.started" or typ == "call.ended":
                d.call_key = k.call(slot, account, body["call_id"])
                p.call_keys.append(d.call_key)
            elif typ == "recharge.result":
                p.request_fields.append((account_key, request_state(body["request_id"])))
                p.request_fields.append((account_key, AccountField.RECHARGE_SEQUENCE.value))
            decoded.append(d)
        return p

    def _place(self, account: str) -> tuple[bytes, int, str]:
        if len(self._places) >= _MAX_PLACES:
            self._places.clear()
        slot = slot_of(account, self.keys.slots)
        place = self._places[account] = (account.encode(), slot, self.keys.account(slot, account))
        return place

    # ---- step 2 ----
    def plan(self, p: Prepared, reads: Reads) -> Outcome:
        out = Outcome(SlotPlan())
        for key, info in reads.accounts.items():
            if info is not None:
                self.accounts[p.account_keys[key]] = info
        for rec, bad in p.refused:
            self._dlq(out, rec, bad.reason, bad.detail)
        seen = dict(reads.seen)  # grows as the batch goes: in-batch duplicates
        calls = dict(reads.calls)
        self._requests = dict(reads.requests)
        # Once a batch: plans change between batches (same thread), never during one.
        self._plans = self.plans()
        sp, results, plan_one = out.plan, out.results, self._plan_one
        for d in p.decoded:
            typ = d.body["type"]
            prior = seen.get(d.seen_key)
            if prior is not None:
                if prior.decode() == d.fp:
                    results[(typ, _DUPLICATE)] += 1
                else:
                    self._dlq(
                        out,
                        d.rec,
                        "conflict",
                        f"{typ} id {d.body['id']!r} seen with another payload",
                    )
                continue
            try:
                applied = plan_one(sp, d, typ, calls)
            except RatingError as exc:
                self._dlq(out, d.rec, exc.reason, str(exc))
                continue
            seen[d.seen_key] = d.fp.encode()
            results[(typ, applied)] += 1
        return out

    def _plan_one(self, sp: SlotPlan, d: Decoded, typ: str, calls: CallStates) -> PlanResult:
        body = d.body
        if typ == "account.upserted":
            return self._upsert(sp, d)
        info = self.accounts.get(body["account"])
        if info is None:
            raise RatingError("unknown_account", f"{typ}: account {body['account']!r} is unknown")
        plans = self._plans.get(info.rate_plan)
        if typ == "call.started" or typ == "call.ended":
            state = calls.get(d.call_key)
            if state is not None and state.state not in _CHANGES[typ]:
                # a second start or end, or one of a call settled already: moves nothing
                self._remember(sp, d)
                return _IGNORED
            call = CallEvent(d, info, plans, state)
            if typ == "call.started":
                return self._call_started(sp, call, calls)
            return self._call_ended(sp, call, calls)
        if typ == "recharge.result":
            return self._recharge_result(sp, d, info)
        if typ == "fee.charged":
            return self._charge_fee(sp, d, info)
        if typ == "subscription.upserted":
            return self._upsert_subscription(sp, d)
        usage = rate_record(body, info, plans)
        sp.slot(d.slot).add(
            d.source,
            d.rec.offset,
            MoveOp(d.account_key, d.seen_key, d.fp, *_movement(d, usage, body["id"], body["time"])),
            d.trace,
        )
        return _APPLIED

    def _charge_fee(self, sp: SlotPlan, d: Decoded, info: AccountInfo) -> PlanResult:
        b = d.body
        usage = rate_fee(b, info)
        sp.slot(d.slot).add(
            d.source,
            d.rec.offset,
            ChargeFee(
                d.account_key,
                d.seen_key,
                d.fp,
                *_movement(d, usage, b["id"], b["time"]),
                b["id"],
                ledger.entry_id(d.tag, b["id"], usage.kind),
                1 if b.get("require_funds") else 0,
            ),
            d.trace,
        )
        return _APPLIED

    def _upsert_subscription(self, sp: SlotPlan, d: Decoded) -> PlanResult:
        b = d.body
        subscription = subscription_from_record(b)
        problem = subscription_problem(subscription)
        if problem is not None:
            raise RatingError(
                "invalid_subscription", f"subscription {b['subscription_id']!r}: {problem}"
            )
        sp.slot(d.slot).add(
            d.source,
            d.rec.offset,
            UpsertSubscription(
                self.keys.subscription(d.slot, b["account"], b["subscription_id"]),
                d.seen_key,
                d.fp,
                b["account"],
                b["subscription_id"],
                b["item"],
                b["description"],
                b["price_micros"],
                b["period"],
                b["billing"],
                b["quantity"],
                subscription.starts_at_ms,
                subscription.ends_at_ms or 0,
            ),
            d.trace,
        )
        return _APPLIED

    def _recharge_result(self, sp: SlotPlan, d: Decoded, info: AccountInfo) -> PlanResult:
        b = d.body
        where = (d.account_key, request_state(b["request_id"]))
        state = self._requests.get(where)
        adopt_number = 0
        if state is None:
            adopt_number = self._forgotten_request(d.account_key, b["account"], b["request_id"])
        if state is None and not adopt_number:
            raise RatingError(
                "unknown_request",
                f"account {b['account']!r} has no recharge request {b['request_id']!r}",
            )
        if state is not None and state not in (RequestStatus.PENDING, RequestStatus.TIMED_OUT):
            if state != b["status"]:
                # Payments changed its mind under a new id: which one is true needs a human
                # (a card charged with no credit, or a credit never paid for).
                raise RatingError(
                    "conflict",
                    f"recharge request {b['request_id']!r} already {state}, "
                    f"result {b['id']!r} says {b['status']}",
                )
            self._remember(sp, d)  # the request already has this result: a resend
            return _IGNORED
        usage = rate_record(b, info, None)
        sp.slot(d.slot).add(
            d.source,
            d.rec.offset,
            RechargeResult(
                d.account_key,
                d.seen_key,
                d.fp,
                b["request_id"],
                adopt_number,
                b["status"],
                *_movement(d, usage, b["id"], b["time"]),
                b.get("reason", ""),
            ),
            d.trace,
        )
        self._requests[where] = b["status"]
        if adopt_number:
            self._requests[(d.account_key, AccountField.RECHARGE_SEQUENCE.value)] = str(
                adopt_number
            )
        return _APPLIED

    def _forgotten_request(self, account_key: str, account: str, request_id: str) -> int:
        """n when `request_id` is the account's "rq-<account>-<n>" with n above its request
        sequence: a request the account made, whose making Redis forgot (a failover to a
        replica that was behind) and has not applied again yet. Its result is applied, not
        refused: the payment was taken. 0 for an id the account never made."""
        number = request_number(account, request_id)
        made = self._requests.get((account_key, AccountField.RECHARGE_SEQUENCE.value))
        if number is None or number <= int(made or 0):
            return 0
        return number

    def _upsert(self, sp: SlotPlan, d: Decoded) -> PlanResult:
        b = d.body
        check_settings(b, self.accounts.get(b["account"]), self.policy)
        ar = b.get("auto_recharge") or {}
        self.accounts[b["account"]] = AccountInfo(
            b["currency"], b["rate_plan"], b["credit_limit_micros"]
        )
        sp.slot(d.slot).add(
            d.source,
            d.rec.offset,
            UpsertAccount(
                d.account_key,
                d.seen_key,
                d.fp,
                b["account"],
                b["currency"],
                b["rate_plan"],
                b["credit_limit_micros"],
                1 if ar.get("enabled") else 0,
                ar.get("threshold_micros", 0),
                ar.get("amount_micros", 0),
                b.get("notify_email", ""),
                ledger.entry_id(d.tag, b["id"], "settings"),
                b["time"],
                b.get("time_zone", "UTC"),
                b.get("low_balance_micros", 0),
            ),
            d.trace,
        )
        return _APPLIED

    def _call_started(self, sp: SlotPlan, call: CallEvent, calls: CallStates) -> PlanResult:
        d, info, plans, state = call
        b = d.body
        # A call is rated by the plan version in force when it was answered: `time` here.
        plan = plans.at(b["time"]) if plans is not None else None
        if plan is None or plan.currency != info.currency:
            plan = plan_for(info, plans, b["account"], b["time"])  # raises: says why
        answered = call_rate(plan, b["direction"], b["to"])
        if state is not None:
            # The end came first: now the route is known, settle it.
            end = dict(b, id=state.end_id, time=state.end_time, duration_ms=state.duration_ms)
            usage = rate_call(end, info, answered)
            self._settle(sp, d, usage, end["id"], end["time"])
            calls[d.call_key] = CallState(_ENDED)
            return _APPLIED
        rate = answered.rate
        answer_ms = parse_time_ms(b["time"])
        sp.slot(d.slot).add(
            d.source,
            d.rec.offset,
            StartCall(
                d.account_key,
                d.seen_key,
                d.call_key,
                self.keys.account_calls(d.slot, b["account"]),
                d.fp,
                b["call_id"],
                answer_ms,
                b["direction"],
                b["from"],
                b["to"],
                b["account"],
                rate.per_minute_micros,
                rate.connect_fee_micros,
                rate.increments.first,
                rate.increments.next,
                rate.prefix,
                answered.plan_id,
                answered.plan_version,
            ),
            d.trace,
        )
        calls[d.call_key] = CallState(
            _ACTIVE, b["direction"], b["from"], b["to"], answer_ms, rate=answered
        )
        return _APPLIED

    def _call_ended(self, sp: SlotPlan, call: CallEvent, calls: CallStates) -> PlanResult:
        d, info, plans, state = call
        b = d.body
        if state is None and ("direction" not in b or "to" not in b):
            sp.slot(d.slot).add(
                d.source,
                d.rec.offset,
                ParkEnd(d.seen_key, d.call_key, d.fp, b["duration_ms"], b["id"], b["time"]),
                d.trace,
            )
            calls[d.call_key] = CallState(
                _PENDING_END,
                duration_ms=b["duration_ms"],
                end_id=b["id"],
                end_time=b["time"],
            )
            return _PARKED
        # A session closed by its TTL already charged what it held: charge the rest only.
        charged = state.charged if state is not None and state.state == _EXPIRED else 0
        usage = rate_call(b, info, answered_rate(b, info, plans, state), charged)
        self._settle(sp, d, usage, b["id"], b["time"])
        calls[d.call_key] = CallState(_ENDED)
        return _APPLIED

    def _settle(self, sp: SlotPlan, d: Decoded, usage: Usage, end_id: str, time: str) -> None:
        account = d.body["account"]
        sp.slot(d.slot).add(
            d.source,
            d.rec.offset,
            SettleCall(
                d.account_key,
                d.seen_key,
                d.call_key,
                self.keys.account_calls(d.slot, account),
                d.fp,
                *_movement(d, usage, end_id, time),
            ),
            d.trace,
        )

    def _remember(self, sp: SlotPlan, d: Decoded) -> None:
        sp.slot(d.slot).add(d.source, d.rec.offset, Remember(d.seen_key, d.fp), d.trace)

    def _dlq(self, out: Outcome, rec: Inbound, reason: str, detail: str) -> None:
        refuse(out.plan, self.keys.slots, rec, reason, detail)
        out.dlq[reason] += 1


def _movement(
    d: Decoded, usage: Usage, event_id: str, time: str
) -> tuple[int, bytes, str, str, str, str]:
    """What every op that moves money carries after its own fields: amount, ledger head
    and kind, account, the cause its commands are named by, and the record's time."""
    cause = ledger.entry_id(d.tag, event_id, "")
    return usage.amount_micros, usage.head, usage.kind, d.body["account"], cause, time


def _wrong_partition(partition: int, expected: int, partitions: int) -> Invalid:
    return Invalid(
        "wrong_partition",
        f"on partition {partition}, expected {expected}: murmur2 of the key "
        f"modulo {partitions} partitions",
    )


def _shown_key(key: bytes) -> str:
    text = repr(key.decode(errors="replace"))
    return text if len(text) <= 64 else text[:61] + "..."
