"""What the relay published, counted into the metrics (and the notable ones logged).

The relay calls a `Published` with the outputs the broker acknowledged. Everything counted
here was computed before: amounts, kinds and currencies travel in the outputs
(`charger.protocol.outputs`), so nothing is parsed again. Ledger counters are summed per
relay pass and incremented once per label set: a labelled increment costs microseconds,
and per entry it was a tenth of the worker's CPU.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from charger.events.timefmt import parse_time_ms
from charger.metrics import MICROS, Metrics
from charger.protocol import outputs as out

log = logging.getLogger("charger.relay")


@dataclass(slots=True)
class _LedgerTally:
    """What one relay pass published to the ledger, applied to the metrics once."""

    entries: Counter[tuple[bytes, bytes]] = field(default_factory=Counter)  # kind, currency
    amounts: Counter[tuple[bytes, bytes, str]] = field(default_factory=Counter)
    recharges: int = 0
    delays: list[float] = field(default_factory=list)  # event time to publish, seconds

    def entry(self, kind: bytes, currency: bytes, amount: int, delay: float) -> None:
        self.entries[(kind, currency)] += 1
        if amount:
            self.amounts[(kind, currency, "credit" if amount > 0 else "debit")] += abs(amount)
        if kind == b"recharge":
            self.recharges += 1
        self.delays.append(max(delay, 0.0))


class Published:
    """Counts outputs the broker acknowledged; a metric never stops the relay."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, outputs: Sequence[out.Output], now: float) -> None:
        """`outputs` were acknowledged by the broker at `now` (epoch seconds)."""
        tally = _LedgerTally()
        for output in outputs:
            try:
                self._one(output, now, tally)
            except Exception:
                log.warning("could not count a published output", exc_info=True)
        m = self.metrics
        for (kind, currency), n in tally.entries.items():
            m.ledger_entries.labels(kind.decode(), currency.decode()).inc(n)
        for (kind, currency, direction), amount in tally.amounts.items():
            m.ledger_amount.labels(kind.decode(), currency.decode(), direction).inc(amount / MICROS)
        if tally.recharges:
            m.recharge_results.labels("succeeded").inc(tally.recharges)
        if tally.delays:
            m.event_to_ledger.observe_all(tally.delays)

    def _one(self, output: out.Output, now: float, tally: _LedgerTally) -> None:
        m = self.metrics
        if type(output) is out.LedgerEntry:
            at_s = parse_time_ms(output.time.decode()) / 1000
            tally.entry(output.kind, output.currency, output.amount_micros, now - at_s)
        elif type(output) is out.SessionExpired:
            delay = now - output.issued_at_ms / 1000
            tally.entry(b"session_expired", output.currency, output.amount_micros, delay)
        elif type(output) is out.CallCut:
            m.cutoffs.inc()
            late = now - output.cutoff_at_ms / 1000
            m.cutoff_lateness.observe(max(late, 0.0))
            log.info(
                "call cut off",
                extra={
                    "account": _text(output.account),
                    "call_id": _text(output.call_id),
                    "lateness_s": round(late, 3),
                },
            )
        elif type(output) is out.FloorCrossed:
            if output.suspended:
                m.suspensions.inc()
                log.info("account suspended", extra={"account": _text(output.account)})
            else:
                m.restores.inc()
                log.info("account restored", extra={"account": _text(output.account)})
        elif type(output) is out.RechargeRequested:
            m.recharge_requests.inc()
        elif type(output) is out.RechargeDeclined:
            m.recharge_results.labels("failed").inc()
        elif type(output) is out.RechargeTimedOut:
            m.recharge_results.labels("timed_out").inc()
        elif type(output) is out.Refused:
            _log_refused(output)


def _text(value: bytes) -> str:
    return value.decode(errors="replace")


def _log_refused(output: out.Refused) -> None:
    """One log line per refused record, with what identifies it (never its whole body)."""
    log.warning(
        "record refused",
        extra={
            "reason": _text(output.reason),
            "event_id": _text(output.event_id),
            "account": _text(output.key or b"")[:200],
            "topic": _text(output.source_topic),
            "partition": output.source_partition,
            "offset": output.source_offset,
            "detail": _text(output.detail)[:300],
        },
    )
