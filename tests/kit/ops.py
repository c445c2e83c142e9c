"""What a planned batch holds, read through the protocol's types (never by position)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson

from charger.charging import ledger
from charger.charging.planner import Outcome
from charger.protocol.ops import AnyOp

OpType = TypeVar("OpType", bound=AnyOp)


def all_ops(outcome: Outcome) -> list[AnyOp]:
    return outcome.plan.all_ops()


def op_names(outcome: Outcome) -> list[str]:
    """The type names of the planned ops, in order (`["Move", "Refuse"]`)."""
    return [type(op).__name__ for op in all_ops(outcome)]


def planned(outcome: Outcome, kind: type[OpType]) -> list[OpType]:
    return [op for op in all_ops(outcome) if isinstance(op, kind)]


def the_one(outcome: Outcome, kind: type[OpType]) -> OpType:
    (op,) = planned(outcome, kind)
    return op


def ledger_of(op: Any) -> dict[str, Any]:
    """The ledger entry an op with a ledger head will publish (its balance set to 0)."""
    entry: dict[str, Any] = orjson.loads(ledger.complete(op.ledger_head, 0))
    assert entry["amount_micros"] == op.amount_micros
    return entry
