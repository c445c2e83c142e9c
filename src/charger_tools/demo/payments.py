"""The demo's payment service and customers: answer recharge requests, pay when suspended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from charger.events.timefmt import format_time_ms
from charger_tools.demo.tail import Tally
from charger_tools.simulate import SimRecord
from charger_topics import names


@dataclass
class Payments:
    """Approves recharge requests except for one account whose card is declined; customers
    whose account was suspended pay by hand a few seconds later."""

    declined_account: str
    delay_ms: int = 800
    pay_after_ms: int = 3000
    top_up_micros: int = 20_000_000
    _answered: int = 0
    _due: list[tuple[int, SimRecord]] = field(default_factory=list)
    _seen_suspended: set[str] = field(default_factory=set)
    _asked: set[str] = field(default_factory=set)
    results: dict[str, int] = field(default_factory=lambda: {"succeeded": 0, "failed": 0})

    def step(self, tally: Tally, now_ms: int) -> list[SimRecord]:
        """Records due now, in answer to what the worker published so far."""
        for req in tally.requests[self._answered :]:
            # A request read twice (the relay may republish) is answered once.
            if req["request_id"] not in self._asked:
                self._asked.add(req["request_id"])
                self._due.append((now_ms + self.delay_ms, self._answer(req, now_ms)))
        self._answered = len(tally.requests)
        for account in sorted(tally.suspended - self._seen_suspended):
            self._seen_suspended.add(account)
            self._due.append((now_ms + self.pay_after_ms, self._pay(account, now_ms)))
        ready = [r for at, r in self._due if at <= now_ms]
        self._due = [(at, r) for at, r in self._due if at > now_ms]
        return ready

    def pending(self) -> bool:
        """True while an answer or a payment is still to be sent."""
        return bool(self._due)

    def _answer(self, req: dict[str, Any], now_ms: int) -> SimRecord:
        ok = req["account"] != self.declined_account
        status = "succeeded" if ok else "failed"
        self.results[status] += 1
        doc: dict[str, Any] = {
            "id": f"res-{req['request_id']}",
            "type": "recharge.result",
            "account": req["account"],
            "time": format_time_ms(now_ms),
            "request_id": req["request_id"],
            "status": status,
            "amount_micros": req["amount_micros"] if ok else 0,
        }
        if not ok:
            doc["reason"] = "card_declined"
        return SimRecord(names.RECHARGE_RESULTS, req["account"].encode(), orjson.dumps(doc), "good")

    def _pay(self, account: str, now_ms: int) -> SimRecord:
        doc = {
            "id": f"paynow-{account}-{now_ms}",
            "type": "balance.credited",
            "account": account,
            "time": format_time_ms(now_ms),
            "amount_micros": self.top_up_micros,
            "reference": f"PAYNOW-{now_ms}",
        }
        return SimRecord(names.BILLING_ACCOUNTS, account.encode(), orjson.dumps(doc), "good")
