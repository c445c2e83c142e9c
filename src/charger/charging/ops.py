"""Planned operations for apply.lua, packed per slot into KEYS and ARGV.

The planner decides *what* happens to each record (pure Python, no I/O); this module only
lays those decisions out in the flat argument format the script reads. The opcodes and
their key/argument counts must match ``lua/apply.lua``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack  # type: ignore[import-untyped]
import orjson

from charger.charging.records import Inbound
from charger.store.keys import Keys
from topics import names

KeyArg = str | bytes | int


@dataclass(frozen=True, slots=True)
class ScriptConfig:
    """Deployment settings apply.lua reads from its header."""

    seen_ttl_s: int
    tombstone_ttl_s: int
    hold_interval_s: int
    hold_lead_ms: int
    max_call_ms: int
    recharge_timeout_ms: int
    recharge_backoff_ms: int


@dataclass(slots=True)
class SlotBatch:
    """Everything one apply.lua call does in one slot."""

    slot: int
    keys: list[str] = field(default_factory=list)
    argv: list[KeyArg] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> index
    ops: int = 0

    def source_index(self, source: str) -> int:
        idx = self.sources.get(source)
        if idx is None:
            idx = len(self.sources) + 1
            self.sources[source] = idx
        return idx

    def add(
        self, opcode: str, source: str, offset: int, keys: list[str], args: list[KeyArg]
    ) -> None:
        self.keys += keys
        idx = self.sources.get(source)
        argv = self.argv
        argv.append(opcode)
        argv.append(idx if idx is not None else self.source_index(source))
        argv.append(offset)
        argv += args
        self.ops += 1

    def add_tick(self, max_sessions: int) -> None:
        """Look at the slot's sessions that are due: extend holds, cut, expire."""
        self.argv.append("T")
        self.argv.append(max_sessions)
        self.ops += 1

    def script_args(
        self, k: Keys, now_ms: int, cfg: ScriptConfig, highest: dict[str, int]
    ) -> tuple[list[str], list[KeyArg]]:
        """KEYS and ARGV for the call; `highest` is the batch's top offset per source."""
        keys = [
            k.watermark(self.slot),
            k.outbox(self.slot),
            k.accounts(self.slot),
            k.sessions(self.slot),
            k.recharges(self.slot),
            k.held(self.slot),
        ]
        head: list[KeyArg] = [
            now_ms,
            cfg.seen_ttl_s,
            cfg.tombstone_ttl_s,
            cfg.hold_interval_s,
            cfg.hold_lead_ms,
            cfg.max_call_ms,
            cfg.recharge_timeout_ms,
            cfg.recharge_backoff_ms,
            len(self.sources),
        ]
        for source in self.sources:  # dicts keep insertion order == index order
            head.append(source)
            head.append(highest[source])
        # Raw strings (no "bin" type): Redis's cmsgpack reads bytes and text alike as strings.
        packed: bytes = msgpack.packb([self.argv, self.keys], use_bin_type=False)
        head.append(packed)
        return keys, head


class SlotPlan:
    """The batch's operations grouped by slot, in record order within each slot."""

    def __init__(self) -> None:
        self.slots: dict[int, SlotBatch] = {}

    def slot(self, slot: int) -> SlotBatch:
        sb = self.slots.get(slot)
        if sb is None:
            sb = self.slots[slot] = SlotBatch(slot)
        return sb

    def touch(self, slot: int, source: str) -> None:
        """Make sure the slot records the source's watermark even with no op for it."""
        self.slot(slot).source_index(source)


def add_dlq(plan: SlotPlan, slots: int, rec: Inbound, reason: str, detail: str) -> None:
    """Plan a refusal: `rec`'s key and original bytes go to the DLQ with headers naming
    `reason`, `detail` and where the record was read.

    The op goes into the slot of the record's partition number, under the watermark of its
    source partition like every other op, so a redelivered refusal is not published twice.
    """
    headers = orjson.dumps(
        {
            names.DLQ_HEADER_ERROR: reason,
            names.DLQ_HEADER_DETAIL: detail[:500],
            names.DLQ_HEADER_TOPIC: rec.topic,
            names.DLQ_HEADER_PARTITION: str(rec.partition),
            names.DLQ_HEADER_OFFSET: str(rec.offset),
        }
    )
    plan.slot(rec.partition % slots).add(
        "D", rec.source, rec.offset, [], [rec.key or b"", rec.value or b"", headers]
    )
