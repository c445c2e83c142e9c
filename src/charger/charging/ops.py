"""Planned operations for apply.lua, packed per slot into KEYS and ARGV.

The planner decides *what* happens to each record (pure Python, no I/O); this module only
lays those decisions out in the flat argument format the script reads. The opcodes and
their key/argument counts must match ``lua/apply.lua``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from charger.store.keys import Keys

KeyArg = str | bytes | int


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
        self.keys.extend(keys)
        self.argv.append(opcode)
        self.argv.append(self.source_index(source))
        self.argv.append(offset)
        self.argv.extend(args)
        self.ops += 1

    def script_args(
        self, k: Keys, now_ms: int, seen_ttl_s: int, tomb_ttl_s: int, highest: dict[str, int]
    ) -> tuple[list[str], list[KeyArg]]:
        """KEYS and ARGV for the call; `highest` is the batch's top offset per source."""
        keys = [
            k.watermark(self.slot),
            k.outbox(self.slot),
            k.accounts(self.slot),
            k.sessions(self.slot),
            *self.keys,
        ]
        head: list[KeyArg] = [now_ms, seen_ttl_s, tomb_ttl_s, len(self.sources)]
        for source in self.sources:  # dicts keep insertion order == index order
            head.append(source)
            head.append(highest[source])
        return keys, head + self.argv


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
