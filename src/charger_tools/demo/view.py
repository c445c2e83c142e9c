"""The demo's live terminal view: accounts, balances, rates, ledger, DLQ, suspensions."""

from __future__ import annotations

from dataclasses import dataclass

from charger.money import format_micros
from charger_tools.demo.tail import Tally

CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True)
class AccountRow:
    account: str
    currency: str
    plan: str
    balance_micros: int
    suspended: bool


@dataclass(frozen=True)
class Frame:
    elapsed_s: float
    produced: int
    events_per_s: float
    ledger_per_s: float
    rows: list[AccountRow]
    tally: Tally


def render(f: Frame, limit: int = 14) -> str:
    t = f.tally
    lines = [
        f"charger demo  t={f.elapsed_s:5.1f}s  produced={f.produced}  "
        f"events/s={f.events_per_s:7.1f}  ledger/s={f.ledger_per_s:7.1f}   (Ctrl-C to stop)",
        "",
        f"{'account':<12} {'plan':<10} {'balance':>16} {'entries':>8} {'last':<13} status",
        "-" * 72,
    ]
    busiest = sorted(f.rows, key=lambda r: -t.ledger_count.get(r.account, 0))[:limit]
    for r in sorted(busiest, key=lambda r: r.account):
        status = "SUSPENDED" if r.suspended else "active"
        lines.append(
            f"{r.account:<12} {r.plan:<10} {format_micros(r.balance_micros):>12} {r.currency:<3} "
            f"{t.ledger_count.get(r.account, 0):>8} {t.last_kind.get(r.account, '-'):<13} {status}"
        )
    suspended_now = sum(r.suspended for r in f.rows)
    lines += [
        "-" * 72,
        f"ledger entries {len(t.ledger_ids)}  by kind: "
        + ", ".join(f"{k}={n}" for k, n in sorted(t.kinds.items())),
        "fees "
        + (", ".join(f"{k}={n}" for k, n in sorted(t.fee_items.items())) or "none yet")
        + f"  (by subscription {t.subscription_days})  charge results: "
        + (", ".join(f"{k}={n}" for k, n in sorted(t.charge_results.items())) or "none yet"),
        f"DLQ {sum(t.dlq.values())}: " + ", ".join(f"{k}={n}" for k, n in sorted(t.dlq.items())),
        f"accounts {len(f.rows)}  suspended now {suspended_now}  "
        f"suspensions {t.commands['account.suspended']}  restores {t.commands['account.restored']}",
    ]
    return "\n".join(lines)
