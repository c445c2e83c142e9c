"""A telephony switch simulator: deterministic traffic for tests, demos and benchmarks.

The core (`model`, `switch`) is pure: the same configuration, seed and start time give the
same bytes. `produce` is the thin part that sends them to Kafka.
"""

from __future__ import annotations

from charger_tools.simulate.model import (
    KINDS,
    AccountProfile,
    RecordKind,
    SimConfig,
    SimRecord,
    account_profiles,
    account_records,
    format_time,
    sample_accounts,
    stats,
)
from charger_tools.simulate.switch import Switch

__all__ = [
    "KINDS",
    "AccountProfile",
    "RecordKind",
    "SimConfig",
    "SimRecord",
    "Switch",
    "account_profiles",
    "account_records",
    "format_time",
    "sample_accounts",
    "stats",
]
