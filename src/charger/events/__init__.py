"""Record decoding for the worker: checked records from raw bytes, and contract times."""

from __future__ import annotations

from charger.events.timefmt import format_time_ms, parse_time_ms
from charger.events.validate import MAX_RECORD_BYTES, REASONS, Invalid, decode

__all__ = ["MAX_RECORD_BYTES", "REASONS", "Invalid", "decode", "format_time_ms", "parse_time_ms"]
