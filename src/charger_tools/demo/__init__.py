"""The `charger demo` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from charger.cli import tool
from charger_tools.demo.run import DemoOptions, main


@tool("demo", "embedded stack + worker + simulated switch, with a live view")
def demo_command(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="charger demo",
        description="Start broker and Redis (unless CHARGER_KAFKA_BOOTSTRAP / CHARGER_REDIS_URL "
        "are set), the worker and a simulated switch; show a live view until Ctrl-C.",
    )
    p.add_argument("--seconds", type=float, default=0.0, help="stop after N seconds (0: Ctrl-C)")
    p.add_argument("--summary-json", default="", help="run headless and write the summary here")
    p.add_argument("--web-port", type=int, default=6066, help="worker's /metrics port")
    p.add_argument("--accounts", type=int, default=50)
    p.add_argument("--call-rate", type=float, default=8.0, help="answered calls per second")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    return main(DemoOptions(a.seconds, a.summary_json, a.web_port, a.accounts, a.call_rate, a.seed))
