"""`charger` with a failpoint installed: the worker entry point of the crash tests.

Run as ``python -m tests.kit.failpoint_worker FAILPOINT worker [options]``. The
failpoint is patched into `BatchWorker` here, before the command line starts the worker,
so the product's charging path carries no failpoint of its own.

- ``kill_after_apply``: SIGKILL the worker right after a batch's Lua apply returned, before
  its outputs are published and its offsets committed (money moved, nothing else).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import TopicPartition

from charger.charging.records import Inbound
from charger.cli import main
from charger.kafka.batch import BatchWorker


def kill_after_apply() -> None:
    process = BatchWorker.process

    async def process_then_die(
        self: BatchWorker, batch: list[Inbound], first: Mapping[TopicPartition, int]
    ) -> set[TopicPartition]:
        # Only the batch's apply dies (the ticker's applies run outside `process`, under the
        # same lock, so they never see the patched method).
        apply = self.store.apply

        async def apply_then_die(*args: Any, **kwargs: Any) -> Any:
            result = await apply(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
            return result

        self.store.apply = apply_then_die  # type: ignore[method-assign]
        try:
            return await process(self, batch, first)
        finally:
            del self.store.apply

    BatchWorker.process = process_then_die  # type: ignore[method-assign]


FAILPOINTS: dict[str, Callable[[], None]] = {"kill_after_apply": kill_after_apply}


if __name__ == "__main__":
    FAILPOINTS[sys.argv[1]]()
    main(sys.argv[2:])
