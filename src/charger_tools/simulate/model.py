"""Simulator model: configuration, the record tuple, phone numbers and the sample accounts.

Everything here is pure and deterministic for a given seed. Floats describe time and
rates only; every amount of money is an integer count of micro-units.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import orjson

from charger_topics import names

RecordKind = Literal["good", "duplicate", "malformed", "conflict"]
KINDS: tuple[RecordKind, ...] = ("good", "duplicate", "malformed", "conflict")

# 2026-11-22T10:00:00.000Z: the default start of simulated time.
DEFAULT_START_MS = int(datetime(2026, 11, 22, 10, tzinfo=UTC).timestamp()) * 1000

MICROS = 1_000_000

# Sample rate plans and their currencies, with the share of accounts on each.
PLANS: tuple[tuple[str, str, float], ...] = (
    ("std-usd", "USD", 0.5),
    ("pro-usd", "USD", 0.25),
    ("local-uah", "UAH", 0.25),
)

US_AREA_CODES = (212, 213, 305, 312, 404, 415, 512, 617, 646, 702, 720, 206)
UK_PREFIXES = ("7", "7", "7", "20", "161", "131")
UA_OPERATORS = (50, 63, 66, 67, 68, 73, 93, 95, 96, 97, 98, 99, 44)


@dataclass
class SimConfig:
    """Traffic shape of the simulated switch; all rates are per second of simulated time."""

    accounts: int = 50
    seed: int = 7
    start_ms: int = DEFAULT_START_MS
    # Answered calls: Poisson arrivals over all accounts, lognormal talk time with a cap.
    call_rate_per_s: float = 5.0
    mean_call_s: float = 90.0
    call_sigma: float = 1.3
    max_call_s: float = 7200.0
    outbound_fraction: float = 0.70
    inbound_fraction: float = 0.22
    forwarded_fraction: float = 0.08
    # Text messages: Poisson arrivals; some arrivals are a burst from one account in 1 s.
    sms_rate_per_s: float = 2.0
    sms_received_fraction: float = 0.3
    sms_burst_fraction: float = 0.02
    sms_burst_size: int = 25
    # Ring-through connection attempts.
    ring_through_rate_per_s: float = 0.5
    # Bad behaviour, each as a fraction of all records sent.
    duplicate_fraction: float = 0.02
    malformed_fraction: float = 0.01
    conflict_fraction: float = 0.005
    duplicate_later_fraction: float = 0.5
    duplicate_max_delay_s: float = 60.0
    # Destination mix of outbound and forwarded legs.
    dest_us: float = 0.45
    dest_uk: float = 0.20
    dest_ua: float = 0.25
    dest_tollfree: float = 0.10
    # Accounts opened with a few cents so a short demo sees them suspended.
    small_accounts: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.accounts <= 9999:
            raise ValueError("accounts must be within 1..9999")
        rates = (self.call_rate_per_s, self.sms_rate_per_s, self.ring_through_rate_per_s)
        if min(rates) < 0 or self.mean_call_s <= 0 or self.max_call_s <= 0:
            raise ValueError("rates must be >= 0 and call durations > 0")
        bad = (self.duplicate_fraction, self.malformed_fraction, self.conflict_fraction)
        if min(bad) < 0 or sum(bad) >= 0.5:
            raise ValueError("duplicate, malformed and conflict fractions must sum below 0.5")
        directions = (self.outbound_fraction, self.inbound_fraction, self.forwarded_fraction)
        destinations = (self.dest_us, self.dest_uk, self.dest_ua, self.dest_tollfree)
        if min(directions + destinations) < 0 or sum(directions) <= 0 or sum(destinations) <= 0:
            raise ValueError("direction and destination mixes need non-negative weights")


class SimRecord(NamedTuple):
    """One record as the switch sends it, and what the worker should make of it."""

    topic: str
    key: bytes | None
    value: bytes
    kind: RecordKind


@dataclass(frozen=True)
class AccountProfile:
    """A simulated customer: settings, opening credit and how busy it is."""

    id: str
    currency: str
    rate_plan: str
    number: str
    weight: float
    opening_micros: int
    credit_limit_micros: int
    auto_recharge: dict[str, Any] | None
    notify_email: str
    small: bool


def format_time(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with exactly three fractional digits."""
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def us_number(rng: random.Random) -> str:
    """A US geographic number, +1 NPA NXX XXXX."""
    return f"+1{rng.choice(US_AREA_CODES)}{rng.randint(200, 999)}{_digits(rng, 4)}"


def uk_number(rng: random.Random) -> str:
    """A UK mobile or geographic number."""
    prefix = rng.choice(UK_PREFIXES)
    return f"+44{prefix}{_digits(rng, 10 - len(prefix))}"


def ua_number(rng: random.Random) -> str:
    """A Ukrainian mobile or Kyiv number, +380 XX XXXXXXX."""
    return f"+380{rng.choice(UA_OPERATORS)}{_digits(rng, 7)}"


def tollfree_number(rng: random.Random) -> str:
    """A US toll-free number, +1 800 XXX XXXX."""
    return f"+1800{rng.randint(200, 999)}{_digits(rng, 4)}"


def destination(cfg: SimConfig, rng: random.Random, sms: bool = False) -> str:
    """A called (or texted) number drawn from the configured destination mix."""
    weights = (cfg.dest_us, cfg.dest_uk, cfg.dest_ua, cfg.dest_tollfree)
    pick = rng.choices((us_number, uk_number, ua_number, tollfree_number), weights)[0]
    if sms and pick is tollfree_number:
        pick = us_number
    return pick(rng)


def account_id(n: int) -> str:
    """The id of the n-th simulated account (1-based): acct-0001, acct-0002, ..."""
    return f"acct-{n:04d}"


def account_profiles(cfg: SimConfig) -> list[AccountProfile]:
    """The simulated customers, deterministic for `cfg.seed` and `cfg.accounts`."""
    rng = random.Random(f"accounts-{cfg.seed}")
    n = cfg.accounts
    small = set(rng.sample(range(n), min(cfg.small_accounts, n)))
    plans = [p[:2] for p in PLANS]
    shares = [p[2] for p in PLANS]
    out: list[AccountProfile] = []
    for i in range(n):
        acct = account_id(i + 1)
        plan, currency = rng.choices(plans, shares)[0]
        uah = currency == "UAH"
        if i in small:
            opening = rng.choice((2_000_000, 5_000_000) if uah else (50_000, 100_000, 250_000))
        else:
            units = (200, 500, 1000, 2000, 5000, 8000) if uah else (5, 10, 20, 25, 50, 100, 200)
            opening = rng.choice(units) * MICROS
        credit_limit = 5_000_000 if i not in small and rng.random() < 0.15 else 0
        recharge: dict[str, Any] | None = None
        roll = rng.random()
        if i not in small and roll < 0.5:
            threshold = rng.choice((400, 800) if uah else (10, 20)) * MICROS
            amount = rng.choice((2000, 4000) if uah else (60, 100)) * MICROS
            recharge = {"enabled": True, "threshold_micros": threshold, "amount_micros": amount}
        elif roll < 0.75:
            recharge = {"enabled": False, "threshold_micros": 0, "amount_micros": 0}
        weight = rng.lognormvariate(0.0, 0.8)
        out.append(
            AccountProfile(
                id=acct,
                currency=currency,
                rate_plan=plan,
                number=ua_number(rng) if uah else us_number(rng),
                weight=max(weight, 1.5) if i in small else weight,
                opening_micros=opening,
                credit_limit_micros=credit_limit,
                auto_recharge=recharge,
                notify_email=f"billing+{acct}@example.com",
                small=i in small,
            )
        )
    return out


def sample_accounts(cfg: SimConfig) -> list[dict[str, Any]]:
    """`account.upserted` then `balance.credited` (the opening credit) for every account."""
    out: list[dict[str, Any]] = []
    at = cfg.start_ms - 60_000
    for n, p in enumerate(account_profiles(cfg)):
        upsert: dict[str, Any] = {
            "id": f"upsert-{cfg.seed}-{p.id}",
            "type": "account.upserted",
            "account": p.id,
            "time": format_time(at + 2 * n),
            "currency": p.currency,
            "rate_plan": p.rate_plan,
            "credit_limit_micros": p.credit_limit_micros,
        }
        if p.auto_recharge is not None:
            upsert["auto_recharge"] = dict(p.auto_recharge)
        upsert["notify_email"] = p.notify_email
        out.append(upsert)
        out.append(
            {
                "id": f"credit-{cfg.seed}-{p.id}",
                "type": "balance.credited",
                "account": p.id,
                "time": format_time(at + 2 * n + 1),
                "amount_micros": p.opening_micros,
                "reference": f"PAY-{cfg.seed}-{n + 1:04d}",
            }
        )
    return out


def account_records(cfg: SimConfig) -> list[SimRecord]:
    """`sample_accounts` encoded for `billing.accounts`, keyed by account id."""
    return [
        SimRecord(names.BILLING_ACCOUNTS, d["account"].encode(), orjson.dumps(d), "good")
        for d in sample_accounts(cfg)
    ]


def record_type(value: bytes) -> str:
    """The `type` of an encoded record, or "-" when it has none that can be read."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "-"
    kind = doc.get("type") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else "-"


def stats(records: Iterable[SimRecord]) -> Counter[str]:
    """Counts by kind ("good", ...) and by kind and type ("good:call.started", ...)."""
    out: Counter[str] = Counter()
    for r in records:
        out[r.kind] += 1
        out[f"{r.kind}:{record_type(r.value)}"] += 1
    return out
