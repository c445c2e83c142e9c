"""The bad-input corpus: every kind of broken record charger must refuse, as data.

Each case is one Kafka record (topic, key, value bytes) with the DLQ reason it must get and
a substring its detail must contain. The unit tests run every case through the decoder,
the planner or the rate plan book; the integration test sends the whole corpus to the real
broker between good records and checks each one reaches the DLQ once, untouched.

Cases name accounts and plans through :class:`Ids`, so a run can make them unique, and rely
on a world of accounts and plans (:func:`world`, :func:`world_plans`) and on one good record
sent before them (:func:`prelude`: the original of the conflicting duplicate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from charger.protocol.keys import slot_of
from charger.rating.model import MAX_PRICE_MICROS
from charger_topics import names
from tests.kit import records

EV, AC, RR, RP = (
    names.TELEPHONY_EVENTS,
    names.BILLING_ACCOUNTS,
    names.RECHARGE_RESULTS,
    names.RATE_PLANS,
)
T0 = "2026-11-22T10:00:00.000Z"
LATER = "2026-11-22T10:00:00.001Z"  # a plan version's start just after T0: not yet in force
ROUTE = {"direction": "outbound", "from": "+15550001", "to": "+14155550100"}


@dataclass(frozen=True)
class Case:
    kind: str
    topic: str
    key: str | None
    value: bytes | None
    reason: str
    detail: str  # a substring of the kafka_dlt-exception-message header
    partition: int | None = None  # where the record is put; None: its key's murmur2 partition


@dataclass(frozen=True)
class Ids:
    """Names of one run's accounts and plans; `uid` keeps runs apart on a shared broker."""

    uid: str

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):  # copy, pickle and friends probe dunder names
            raise AttributeError(name)
        return f"{name}-{self.uid}"

    @property
    def request(self) -> str:
        """The first recharge request of `rch` (apply.lua numbers them per account)."""
        return f"rq-{self.rch}-1"


def world(ids: Ids) -> dict[str, tuple[str, str]]:
    """The accounts the cases assume exist, with (currency, rate plan); `ghost` does not."""
    return {
        ids.good: ("USD", "std-usd"),  # the account whose good records surround the bad ones
        ids.uah: ("UAH", "std-usd"),  # a plan in another currency
        ids.noplan: ("USD", "no-such-plan"),
        ids.local: ("UAH", "local-uah"),  # no forwarded rate
        ids.big: ("USD", ids.pricey),  # the highest price a plan may state
        ids.rch: ("USD", "std-usd"),  # auto-recharge on; request `ids.request` has succeeded
        ids.early: ("USD", ids.later),  # its plan's only version starts after T0
    }


def world_plans(ids: Ids) -> list[dict[str, Any]]:
    """The plans the cases assume are loaded besides the sample ones: `p`, `pricey`, `later`."""
    most = {"prefix": "", "direction": "outbound", "per_minute_micros": MAX_PRICE_MICROS}
    later = plan_doc(ids.later, version=1, effective_from=LATER)
    return [plan_doc(ids.p), plan_doc(ids.pricey, voice=[most]), later]


# The corpus's own builders: ids carry the run's uid, `good` is the default account, and
# `changes` replace fields (their type and time too) keeping the record's field order.
def sms(ids: Ids, eid: str, account: str = "", **changes: Any) -> dict[str, Any]:
    acct = account or ids.good
    doc = records.sms_sent(T0, acct, f"{eid}-{ids.uid}", message_id=f"m-{eid}", segments=1)
    return doc | changes


def ended(ids: Ids, eid: str, account: str = "", **changes: Any) -> dict[str, Any]:
    acct = account or ids.good
    doc = records.call_ended(T0, acct, f"{eid}-{ids.uid}", call_id=f"k-{eid}", duration_ms=30_000)
    return doc | changes


def upsert(ids: Ids, eid: str, account: str = "", **changes: Any) -> dict[str, Any]:
    return records.account_upserted(T0, account or ids.good, f"{eid}-{ids.uid}") | changes


def credit(ids: Ids, eid: str, account: str = "", **changes: Any) -> dict[str, Any]:
    acct = account or ids.good
    doc = records.balance_credited(
        T0, acct, f"{eid}-{ids.uid}", amount_micros=500_000, reference="pay-now"
    )
    return doc | changes


def result(ids: Ids, eid: str, account: str = "", **changes: Any) -> dict[str, Any]:
    acct = account or ids.rch
    doc = records.recharge_result(
        T0, acct, f"{eid}-{ids.uid}", request_id=ids.request, amount_micros=50_000_000
    )
    return doc | changes


def plan_doc(plan_id: str, sms_out: Any = "0.0100", **changes: Any) -> dict[str, Any]:
    voice = [{"prefix": "", "direction": "outbound", "per_minute": "0.60", "increments": "1/1"}]
    doc = {
        "id": plan_id,
        "currency": "USD",
        "voice": voice,
        "sms": {"outbound_per_segment": sms_out},
    }
    return doc | changes


def plan_record(ids: Ids, eid: str, doc: dict[str, Any]) -> dict[str, Any]:
    return records.rate_plan_upserted(T0, f"{eid}-{ids.uid}", doc)


def j(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def nested(depth: int) -> bytes:
    """A valid SMS carrying an extra field nested `depth` levels (orjson cannot build it)."""
    return b'{"id":"deep","type":"sms.sent","x":' + b"[" * depth + b"]" * depth + b"}"


def prelude(ids: Ids) -> list[tuple[str, str, bytes]]:
    """Good records the cases refer to, to be sent (and charged) before them."""
    return [(EV, ids.good, j(sms(ids, "g1")))]


Row = tuple[str, bytes | None, str, str]  # kind, value, reason, detail substring


def cases(ids: Ids) -> list[Case]:
    """The corpus, grouped by topic and key (each group's records share a partition)."""
    g, u, n = ids.good, ids.uid, iter(range(1000))

    def S(**ch: Any) -> bytes:  # one letter a record type keeps rows short
        return j(sms(ids, f"s{next(n)}", **ch))

    def E(**ch: Any) -> bytes:
        return j(ended(ids, f"e{next(n)}", **ch))

    def U(**ch: Any) -> bytes:
        return j(upsert(ids, f"u{next(n)}", **ch))

    def C(**ch: Any) -> bytes:
        return j(credit(ids, f"c{next(n)}", **ch))

    def P(**ch: Any) -> bytes:
        return j(plan_record(ids, f"p{next(n)}", plan_doc(ids.p, **ch)))

    def drop(raw: bytes, name: str) -> bytes:
        return j({k: v for k, v in orjson.loads(raw).items() if k != name})

    deep = S()[:-1] + b',"x":' + b"[" * 300 + b"]" * 300 + b"}"
    twice = P().replace(b'"currency":"USD"', b'"currency":"USD","currency":"EUR"')
    rate = plan_doc(ids.p)["voice"][0]
    auto = {"enabled": True, "threshold_micros": 1, "amount_micros": 2}
    events: list[Row] = [
        # the bytes are not one JSON object
        ("empty value", b"", "empty_record", "is empty"),
        ("null value (tombstone)", None, "empty_record", "has no value"),
        ("truncated JSON", S()[:-9], "malformed_json", "end of data"),
        ("trailing garbage", S() + b" }", "malformed_json", "content after"),
        ("NaN literal", b'{"id":"n","duration_ms":NaN}', "malformed_json", "not valid JSON"),
        ("byte order mark", b"\xef\xbb\xbf" + S(), "malformed_json", "byte order mark"),
        ("lone surrogate escape", b'{"id":"\\ud800"}', "malformed_json", "surrogate"),
        ("invalid UTF-8", S().replace(b"+1415", b"+14\xff15"), "invalid_utf8", "byte 0xff"),
        ("Latin-1 text", b'{"id":"caf\xe9"}', "invalid_utf8", "byte 0xe9"),
        ("nested past the parser", nested(1100), "too_deeply_nested", "254 levels"),
        ("nested past re-encoding", deep, "too_deeply_nested", "254 levels"),
        ("JSON array", b"[1,2]", "not_an_object", "got array"),
        ("JSON string", b'"sms.sent"', "not_an_object", "got string"),
        ("over 64 KiB", S(pad="x" * 65_536), "record_too_large", "limit is 65536"),
        # not a record of this topic
        ("unknown type", S(type="call.teleported"), "unknown_type", "'call.teleported'"),
        ("type not a string", S(type=7), "unknown_type", "record type 7"),
        ("no type", drop(S(), "type"), "missing_field", "type is required"),
        ("account type on events", U(), "wrong_topic", "'account.upserted'"),
        # missing fields, wrong JSON types
        ("no destination", drop(S(), "to"), "missing_field", "sms.sent: to is required"),
        ("no id", drop(S(), "id"), "missing_field", "id is required"),
        ("duration as string", E(duration_ms="30"), "wrong_type", "must be an integer, got string"),
        ("duration as fraction", E(duration_ms=12.5), "wrong_type", "got number"),
        ("duration as whole float", E(duration_ms=3e4), "wrong_type", "got number"),
        ("segments as boolean", S(segments=True), "wrong_type", "got boolean"),
        ("call id null", E(call_id=None), "wrong_type", "call_id must be a string, got null"),
        # values out of bounds
        ("negative duration", E(duration_ms=-5), "negative_value", "duration_ms must not be"),
        ("eight-day call", E(duration_ms=8 * 86_400_000), "value_too_large", "<= 604800000"),
        (
            "duration past 64 bits",
            E(duration_ms=7).replace(b":7", b":" + b"9" * 25),
            "value_too_large",
            "an integer <=",
        ),
        ("zero segments", S(segments=0), "out_of_range", "segments must be >= 1, got 0"),
        ("thousand segments", S(segments=1000), "value_too_large", "segments must be <= 255"),
        ("400-digit number", S(to="+1" + "5" * 400), "value_too_large", "characters, got 402"),
        ("empty call id", E(call_id=""), "out_of_range", "call_id must be 1 to 128"),
        ("unknown direction", E(direction="sideways"), "out_of_range", "'sideways'"),
        ("time without millis", S(time="2026-11-22T10:00:00Z"), "invalid_time", "RFC 3339"),
        ("february 30", S(time="2026-02-30T10:00:00.000Z"), "invalid_time", "2026-02-30"),
        # well formed, but cannot be charged
        ("same id, other payload", j(sms(ids, "g1", segments=3)), "conflict", "another payload"),
    ]
    accounts: list[Row] = [
        ("event type on accounts", S(), "wrong_topic", "'sms.sent'"),
        ("money as float", C(amount_micros=1.5), "wrong_type", "amount_micros must be an integer"),
        ("money as decimal string", C(amount_micros="1.50"), "wrong_type", "got string"),
        ("settings not an object", U(auto_recharge=True), "wrong_type", "must be an object"),
        ("settings incomplete", U(auto_recharge={"enabled": True}), "missing_field", "threshold"),
        ("negative credit limit", U(credit_limit_micros=-1), "negative_value", "credit_limit"),
        ("absurd top-up", C(amount_micros=10**14), "value_too_large", "<= 10000000000000"),
        ("zero top-up", C(amount_micros=0), "out_of_range", "amount_micros must be >= 1"),
        ("currency too long", U(currency="USDT"), "value_too_large", "currency must be 1 to 3"),
        ("lowercase currency", U(currency="usd"), "invalid_account_settings", "3 uppercase"),
        ("e-mail without domain", U(notify_email="alice"), "invalid_account_settings", "e-mail"),
        ("recharge below policy", U(auto_recharge=auto), "invalid_auto_recharge", "the minimum"),
        ("currency change", U(currency="EUR"), "currency_change", "cannot move to EUR"),
        ("unknown time zone", U(time_zone="Mars/Olympus"), "invalid_account_settings", "IANA"),
        (
            "zero adjustment",
            C(type="balance.adjusted", amount_micros=0, reason="typo"),
            "invalid_adjustment",
            "moves nothing",
        ),
        (
            "advance by the day",
            C(
                type="subscription.upserted",
                subscription_id="daily",
                item="product",
                description="Daily product",
                price_micros=1_000_000,
                period="day",
                billing="advance",
                quantity=1,
                starts_at=T0,
            ),
            "invalid_subscription",
            "period must be month",
        ),
    ]
    plan = j({"id": f"pn-{u}", "type": "rate_plan.upserted", "time": T0})
    zero_inc = P(voice=[rate | {"increments": "0/6"}])
    plans: list[Row] = [
        ("plan not JSON", b'{"plan": {', "malformed_json", "not valid JSON"),
        ("plan record without plan", plan, "missing_field", "plan is required"),
        ("plan with float money", P(sms_out=0.01), "invalid_rate_plan", "is a float"),
        ("plan with negative price", P(sms_out="-0.01"), "invalid_rate_plan", "must not be neg"),
        ("plan price above the cap", P(sms_out="10001"), "invalid_rate_plan", "must be at most"),
        ("plan with misspelt field", P(per_minut="0.1"), "invalid_rate_plan", "unknown field"),
        ("plan increments 0/6", zero_inc, "invalid_rate_plan", "increments.first must be >= 1"),
        ("plan with two prices", P(voice=[rate, rate]), "invalid_rate_plan", "duplicate outbound"),
        ("plan with repeated key", twice, "invalid_rate_plan", "repeated key 'currency'"),
        ("plan with bad currency", P(currency="dollars"), "invalid_rate_plan", "currency"),
        ("plan without voice", drop_plan(P(), "voice"), "invalid_rate_plan", "voice: missing"),
        ("event type on plans", S(), "wrong_topic", "'sms.sent'"),
    ]
    # Records keyed by other accounts than `good` (or by another plan key).
    other, ghost, rch = f"other-{u}", ids.ghost, ids.rch
    day_call = E(account=ids.big, duration_ms=86_400_000, **ROUTE)
    forwarded = E(account=ids.local, **ROUTE | {"direction": "forwarded"})
    nobody = j(result(ids, "ur", g, request_id=f"nobody-{u}"))
    failed, pending = j(result(ids, "rf", status="failed")), j(result(ids, "rp", status="pending"))
    keyed: list[tuple[str, str, Row]] = [
        (EV, other, ("key is not the account", S(), "key_mismatch", f"account {g!r}")),
        (EV, ghost, ("unknown account", S(account=ghost), "unknown_account", "unknown")),
        (AC, ghost, ("top-up, unknown account", C(account=ghost), "unknown_account", "unknown")),
        (EV, ids.noplan, ("plan not loaded", S(account=ids.noplan), "unknown_rate_plan", "loaded")),
        (
            EV,
            ids.uah,
            ("plan in other currency", E(account=ids.uah, **ROUTE), "currency_mismatch", "USD"),
        ),
        (EV, ids.local, ("no rate", forwarded, "no_rate", "no forwarded rate")),
        (
            EV,
            ids.early,
            ("before the plan's start", S(account=ids.early), "no_rate_plan_in_force", T0),
        ),
        (EV, ids.big, ("charge above the cap", day_call, "charge_too_large", "above the limit")),
        (RR, g, ("result for unknown request", nobody, "unknown_request", "no recharge request")),
        (RR, rch, ("result contradicting the first", failed, "conflict", "already succeeded")),
        (RR, rch, ("recharge status unknown", pending, "out_of_range", "succeeded, failed")),
        (RP, other, ("plan under another key", P(), "invalid_rate_plan", "is not the plan id")),
    ]
    out = [Case(k, EV, g, v, r, d) for k, v, r, d in events]
    out += [Case(k, AC, g, v, r, d) for k, v, r, d in accounts]
    out += [Case(k, RP, ids.p, v, r, d) for k, v, r, d in plans]
    return out + [Case(k, topic, key, v, r, d) for topic, key, (k, v, r, d) in keyed]


def drop_plan(raw: bytes, name: str) -> bytes:
    """A plan record whose plan lacks field `name`."""
    doc = orjson.loads(raw)
    doc["plan"].pop(name)
    return j(doc)


# Only the unit tests use these: an embedded broker takes them, a real Kafka refuses them
# on a compacted topic, and keyless records would land among other runs' outputs.
def keyless_cases(ids: Ids) -> list[Case]:
    return [
        Case("event without a key", EV, None, j(sms(ids, "nk")), "key_mismatch", "no key"),
        Case("plan tombstone without a key", RP, None, None, "invalid_rate_plan", "tombstone"),
    ]


# The integration test of this one is tests/integration/test_partitioning.py: it produces
# with a CRC32 partitioner, as librdkafka clients do by default.
def misplaced_cases(ids: Ids, partitions: int) -> list[Case]:
    right = slot_of(ids.good, partitions)
    wrong = (right + 1) % partitions
    event = j(sms(ids, "wp"))
    detail = f"expected {right}"
    return [
        Case("right key, other partition", EV, ids.good, event, "wrong_partition", detail, wrong)
    ]
