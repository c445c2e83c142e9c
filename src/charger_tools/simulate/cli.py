"""The `charger simulate` command: play the switch into a running broker."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from charger.cli import tool
from charger.connections import kafka_security
from charger.settings import Settings
from charger_tools.simulate.model import SimConfig
from charger_tools.simulate.produce import run_switch


@tool("simulate", "play a realistic telephony switch into Kafka (CHARGER_KAFKA_BOOTSTRAP)")
def simulate_command(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="charger simulate")
    p.add_argument("--bootstrap", default=Settings().kafka_bootstrap)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    p.add_argument("--accounts", type=int, default=50)
    p.add_argument("--call-rate", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--with-accounts", action="store_true", help="send the sample accounts first")
    a = p.parse_args(argv)
    if not a.bootstrap:
        p.error("--bootstrap or CHARGER_KAFKA_BOOTSTRAP is required")
    # Played live into a worker on the wall clock: simulated time starts now, or every
    # call would be dated in the past and closed by the session TTL on arrival.
    cfg = SimConfig(
        accounts=a.accounts,
        seed=a.seed,
        call_rate_per_s=a.call_rate,
        start_ms=time.time_ns() // 1_000_000,
    )
    # A secured cluster: the same CHARGER_KAFKA_SECURITY_PROTOCOL / SASL / SSL settings.
    security = kafka_security(Settings())
    totals = asyncio.run(
        run_switch(
            a.bootstrap,
            cfg,
            a.seconds,
            a.speed,
            with_accounts=a.with_accounts,
            security=security,
        )
    )
    for key in sorted(k for k in totals if ":" not in k):
        print(f"{key}: {totals[key]}")
    return 0
