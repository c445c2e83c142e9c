"""The operations the charging core plans for apply.lua, and how they travel.

One `NamedTuple` per operation: immutable like a frozen dataclass, built at tuple speed
(one is built for every record), and its field order is the wire order. The first
`OpShape.key_count` fields are Redis keys, which travel apart from the values so the
script can tell them from data. On the wire one apply.lua call carries a flat list
`opcode, [source index, offset,] [trace,] values...` and the list of the ops' keys, packed
in one MessagePack argument: one argument per value made the client's packing cost more
than the script. The Lua prelude (`charger.protocol.lua`) decodes each op into a table of
these same field names.

The trace (`charger.events.tracecontext`) is the W3C trace context of the op's cause; every
output the op makes carries it back (`charger.protocol.outputs`), so what a record causes
is published with its trace context. It travels beside the op, not in it: it is the
record's, whatever op the record became.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

import msgpack  # type: ignore[import-untyped]

from charger.protocol.keys import Keys

Value = str | bytes | int


class Opcode(IntEnum):
    MOVE = 1
    SETTLE_CALL = 2
    START_CALL = 3
    PARK_END = 4
    UPSERT_ACCOUNT = 5
    RECHARGE_RESULT = 6
    REMEMBER = 7
    REFUSE = 8
    TICK = 9
    CHARGE_FEE = 10
    UPSERT_SUBSCRIPTION = 11
    CHARGE_SUBSCRIPTION = 12


class Move(NamedTuple):
    """Usage or a credit: move money, write its ledger entry, check floor and recharge."""

    account_key: str
    seen_key: str
    fingerprint: str
    amount_micros: int
    ledger_head: bytes  # the ledger entry without balance_after_micros (charging.ledger)
    kind: str  # the ledger entry's kind, for the metrics of what was published
    account: str
    cause: str  # id prefix of the commands this movement may cause
    time: str  # the record's time: when a floor crossing takes effect


class SettleCall(NamedTuple):
    """A call ended: release its hold and charge its final cost."""

    account_key: str
    seen_key: str
    call_key: str
    account_calls_key: str
    fingerprint: str
    amount_micros: int
    ledger_head: bytes
    kind: str
    account: str
    cause: str
    time: str


class StartCall(NamedTuple):
    """A call was answered: open its session at the rate fixed now, place its first hold."""

    account_key: str
    seen_key: str
    call_key: str
    account_calls_key: str
    fingerprint: str
    call_id: str
    answered_at_ms: int
    direction: str
    number_from: str
    number_to: str
    account: str
    price_per_minute_micros: int
    connect_fee_micros: int
    first_increment_s: int
    next_increment_s: int
    prefix: str
    rate_plan: str
    rate_plan_version: int


class ParkEnd(NamedTuple):
    """A call's end came with no start and no route: keep it until the start arrives."""

    seen_key: str
    call_key: str
    fingerprint: str
    duration_ms: int
    end_id: str
    end_time: str


class UpsertAccount(NamedTuple):
    """Create an account or change its settings."""

    account_key: str
    seen_key: str
    fingerprint: str
    account: str
    currency: str
    rate_plan: str
    credit_limit_micros: int
    auto_recharge_enabled: int  # 1 or 0
    auto_recharge_threshold_micros: int
    auto_recharge_amount_micros: int
    notify_email: str
    cause: str
    time: str
    time_zone: str = "UTC"
    low_balance_micros: int = 0  # 0: no low_balance notices


class ChargeFee(NamedTuple):
    """A one-off fee: debit it like usage, or, when it requires funds the account lacks,
    refuse it; either way exactly one result for the fee id."""

    account_key: str
    seen_key: str
    fingerprint: str
    amount_micros: int  # the movement: the fee, negative
    ledger_head: bytes
    kind: str
    account: str
    cause: str
    time: str
    fee_id: str
    ledger_entry_id: str
    require_funds: int  # 1: refused when it would take the available balance below the floor


class UpsertSubscription(NamedTuple):
    """Store a subscription as upserted (its progress stays) and have it looked at now."""

    subscription_key: str
    seen_key: str
    fingerprint: str
    account: str
    subscription_id: str
    item: str
    description: str
    price_micros: int
    period: str
    billing: str
    quantity: int
    starts_at_ms: int
    ends_at_ms: int  # 0: open-ended


class ChargeSubscription(NamedTuple):
    """One scheduled charge of a subscription, applied only if the subscription's progress
    is still the one it was planned from; or, with no amount, only the next look."""

    account_key: str
    subscription_key: str
    charged_through_before: str
    charged_quantity_before: int
    charged_through: str
    charged_quantity: int
    amount_micros: int  # the movement: the charge, negative; 0: nothing to charge
    ledger_head: bytes
    kind: str
    account: str
    cause: str
    time: str
    next_look_ms: int  # when the scheduler looks at it again; -1: never (it ended)


class RechargeResult(NamedTuple):
    """The payment system's answer to a recharge request: credit it or back off."""

    account_key: str
    seen_key: str
    fingerprint: str
    request_id: str
    # n of request id "rq-<account>-<n>" when the planner found no such request although
    # the account made it (n above its sequence: Redis forgot the movement that made it,
    # not yet applied again); 0 otherwise. apply.lua adopts such a request (recharge.lua).
    adopt_number: int
    status: str  # succeeded | failed
    amount_micros: int
    ledger_head: bytes
    kind: str
    account: str
    cause: str
    time: str
    reason: str


class Remember(NamedTuple):
    """An event that moves nothing (a late start of a settled call): only its id is kept."""

    seen_key: str
    fingerprint: str


class Refuse(NamedTuple):
    """A refused record: its key, bytes and headers go to the DLQ with why, where and when
    it was read."""

    key: bytes | bool  # False: the record had no key (a null key)
    value: bytes | bool  # False: a null value
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    event_id: str  # "" when the record has none that could be read
    timestamp_ms: int  # the record's Kafka timestamp
    timestamp_type: int  # 0: CreateTime, 1: LogAppendTime (charger_topics.headers.TIMESTAMP_TYPES)
    headers: bytes  # the record's own headers kept, packed (charging.refusals); b"": none
    headers_dropped: int  # how many of them did not fit (charger_topics.headers.KEPT_HEADER_BYTES)


class Tick(NamedTuple):
    """Look at the slot's due sessions and late recharge requests (no source, no offset)."""

    max_sessions: int


Op = (
    Move
    | SettleCall
    | StartCall
    | ParkEnd
    | UpsertAccount
    | ChargeFee
    | UpsertSubscription
    | RechargeResult
    | Remember
    | Refuse
)
AnyOp = Op | Tick | ChargeSubscription


@dataclass(frozen=True, slots=True)
class OpShape:
    opcode: Opcode
    key_count: int
    sourced: bool = True  # carries a source index and offset, checked against the watermark
    traced: bool = True  # carries the trace context of its cause (a tick has none)


SHAPES: dict[type[AnyOp], OpShape] = {
    Move: OpShape(Opcode.MOVE, 2),
    SettleCall: OpShape(Opcode.SETTLE_CALL, 4),
    StartCall: OpShape(Opcode.START_CALL, 4),
    ParkEnd: OpShape(Opcode.PARK_END, 2),
    UpsertAccount: OpShape(Opcode.UPSERT_ACCOUNT, 2),
    ChargeFee: OpShape(Opcode.CHARGE_FEE, 2),
    RechargeResult: OpShape(Opcode.RECHARGE_RESULT, 2),
    Remember: OpShape(Opcode.REMEMBER, 1),
    Refuse: OpShape(Opcode.REFUSE, 0),
    Tick: OpShape(Opcode.TICK, 0, sourced=False, traced=False),
    UpsertSubscription: OpShape(Opcode.UPSERT_SUBSCRIPTION, 2),
    ChargeSubscription: OpShape(Opcode.CHARGE_SUBSCRIPTION, 2, sourced=False),
}
# The same as plain values: the encoder reads them for every op.
_WIRE: dict[type[AnyOp], tuple[int, int, bool, bool]] = {
    kind: (int(shape.opcode), shape.key_count, shape.sourced, shape.traced)
    for kind, shape in SHAPES.items()
}


@dataclass(frozen=True, slots=True)
class ScriptConfig:
    """Deployment settings apply.lua reads from its header, in this order after `now_ms`."""

    seen_ttl_s: int
    tombstone_ttl_s: int
    hold_interval_s: int
    hold_lead_ms: int
    max_call_ms: int
    recharge_timeout_ms: int
    recharge_backoff_ms: int


# Names every op table has in Lua besides its fields: no field may take them.
RESERVED_NAMES = frozenset({"opcode", "source", "offset", "trace"})

# The keys of one apply.lua call before the ops' own, in this order (KEYS[1..6]).
# What a slot's watermark of a source reads as when it has none (never assigned to a
# worker). -1 is a real watermark: started at assignment, before the source's offset 0.
NO_WATERMARK = -2

SLOT_KEYS = ("watermark", "outbox", "accounts", "sessions", "recharges", "held", "subscriptions")


@dataclass(slots=True)
class SlotBatch:
    """Everything one apply.lua call does in one slot: ops in record order."""

    slot: int
    ops: list[AnyOp] = field(default_factory=list)
    # Per op, the index of its source and its offset there (0, 0 for a tick): parallel
    # lists, not a tuple per op, so planning a batch makes fewer objects for the collector.
    source_indexes: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    traces: list[bytes] = field(default_factory=list)  # per op: its cause's trace context
    sources: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> index

    def source_index(self, source: str) -> int:
        index = self.sources.get(source)
        if index is None:
            index = self.sources[source] = len(self.sources) + 1
        return index

    def add(self, source: str, offset: int, op: Op, trace: bytes = b"") -> None:
        """`op` for the record at `offset` of `source`, whose trace context is `trace`."""
        index = self.sources.get(source)
        self.source_indexes.append(index if index is not None else self.source_index(source))
        self.offsets.append(offset)
        self.traces.append(trace)
        self.ops.append(op)

    def add_tick(self, max_sessions: int) -> None:
        """Look at the slot's sessions that are due: extend holds, cut, expire."""
        self.source_indexes.append(0)
        self.offsets.append(0)
        self.traces.append(b"")
        self.ops.append(Tick(max_sessions))

    def add_scheduled(self, op: ChargeSubscription, trace: bytes = b"") -> None:
        """A scheduler's op: no source and no offset, like a tick."""
        self.source_indexes.append(0)
        self.offsets.append(0)
        self.traces.append(trace)
        self.ops.append(op)

    def encode(self) -> tuple[list[Value], list[str]]:
        """The flat op list and the ops' keys, as apply.lua reads them."""
        values: list[Value] = []
        keys: list[str] = []
        wire = _WIRE
        for index, offset, trace, op in zip(
            self.source_indexes, self.offsets, self.traces, self.ops, strict=True
        ):
            opcode, n, sourced, traced = wire[type(op)]
            values.append(opcode)
            if sourced:
                values.append(index)
                values.append(offset)
            if traced:
                values.append(trace)
            if n:
                keys += op[:n]  # type: ignore[arg-type]  # the first n fields are keys
                values += op[n:]
            else:
                values += op
        return values, keys

    def script_args(
        self,
        keys: Keys,
        now_ms: int,
        config: ScriptConfig,
        highest: Mapping[str, int],
        expected: Mapping[str, int] | None = None,
    ) -> tuple[list[str], list[Value]]:
        """KEYS and ARGV of the call; `highest` is the batch's top offset per source, and
        `expected` the offset each source's watermark must have reached already (the one
        before the batch's first record of it; absent or -1: no check)."""
        slot = self.slot
        slot_keys = [
            keys.watermark(slot),
            keys.outbox(slot),
            keys.accounts(slot),
            keys.sessions(slot),
            keys.recharges(slot),
            keys.held(slot),
            keys.subscriptions(slot),
        ]
        head: list[Value] = [
            now_ms,
            config.seen_ttl_s,
            config.tombstone_ttl_s,
            config.hold_interval_s,
            config.hold_lead_ms,
            config.max_call_ms,
            config.recharge_timeout_ms,
            config.recharge_backoff_ms,
            len(self.sources),
        ]
        for source in self.sources:  # dicts keep insertion order == index order
            head.append(source)
            head.append(highest[source])
            head.append(expected.get(source, -1) if expected else -1)
        values, op_keys = self.encode()
        # Raw strings (no "bin" type): Redis's cmsgpack reads bytes and text alike as strings.
        head.append(msgpack.packb([values, op_keys], use_bin_type=False))
        return slot_keys, head


class SlotPlan:
    """A batch's operations grouped by slot, in record order within each slot."""

    def __init__(self) -> None:
        self.slots: dict[int, SlotBatch] = {}

    def slot(self, slot: int) -> SlotBatch:
        batch = self.slots.get(slot)
        if batch is None:
            batch = self.slots[slot] = SlotBatch(slot)
        return batch

    def touch(self, slot: int, source: str) -> None:
        """Make sure the slot records the source's watermark even with no op for it."""
        self.slot(slot).source_index(source)

    def all_ops(self) -> list[AnyOp]:
        """Every op of every slot, slot by slot (for tests and tools)."""
        return [op for batch in self.slots.values() for op in batch.ops]
