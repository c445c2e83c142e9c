"""Writes that must survive a failover: WAIT or WAITAOF after them, on the same connection.

Redis replicates asynchronously: a primary acknowledges a write before any replica has it,
so a failover can promote a replica that never saw the last batches. With
``CHARGER_REDIS_MIN_REPLICAS`` > 0 the worker does not count a batch as done until that
many replicas acknowledged its writes: ``WAIT n timeout`` (or ``WAITAOF 1 n timeout``
with ``CHARGER_REDIS_WAIT_AOF``: fsynced to the primary's and the replicas' append-only
files). Only then are its offsets committed and its outputs published.

WAIT counts the writes of the connection that sends it, so it rides in the same pipeline
as the writes. Two TIME commands around it measure, on the server's clock, how long it
held the pipeline. Fewer acknowledgements than required raise `NotDurable`, a Redis
error: the batch is retried with backoff and nothing is committed (applying it again is
harmless, apply.lua's watermark skips it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Protocol

from redis.exceptions import RedisError, ResponseError

# Which path waited: a batch's or tick's apply, or the relay before it publishes.
Stage = Literal["apply", "relay"]
STAGES: tuple[Stage, ...] = ("apply", "relay")


class WaitCommand(Enum):
    WAIT = "WAIT"
    WAITAOF = "WAITAOF"


class WaitOutcome(Enum):
    ACKNOWLEDGED = "acknowledged"
    TIMED_OUT = "timed_out"


# Told of every wait: the stage, how it ended, and the seconds it took on the server.
Observer = Callable[[Stage, WaitOutcome, float], None]


class WaitPipeline(Protocol):
    """What a wait needs of a redis-py pipeline."""

    def time(self) -> Any: ...

    def wait(self, num_replicas: int, timeout: int) -> Any: ...

    def waitaof(self, num_local: int, num_replicas: int, timeout: int) -> Any: ...


class NotDurable(RedisError):
    """Fewer replicas acknowledged a batch's writes than the settings require."""


class DurabilityConfigError(RuntimeError):
    """The Redis server cannot give the durability the settings ask for."""


# Replies a wait adds to its pipeline: TIME, WAIT or WAITAOF, TIME.
REPLIES = 3


@dataclass(frozen=True)
class Durability:
    """How applied writes are made durable: replicas to wait for, AOF or not, how long."""

    replicas: int = 0
    aof: bool = False
    timeout_ms: int = 1000
    observe: Observer | None = None

    @property
    def waits(self) -> bool:
        """False: nothing is added to any pipeline (the default, and no cost)."""
        return self.replicas > 0 or self.aof

    @property
    def command(self) -> WaitCommand:
        return WaitCommand.WAITAOF if self.aof else WaitCommand.WAIT

    def queue(self, pipe: WaitPipeline) -> int:
        """Append the wait to `pipe`, after its writes; returns the replies it adds."""
        if not self.waits:
            return 0
        pipe.time()
        if self.aof:
            pipe.waitaof(1, self.replicas, self.timeout_ms)
        else:
            pipe.wait(self.replicas, self.timeout_ms)
        pipe.time()
        return REPLIES

    def check(self, stage: Stage, replies: Sequence[Any]) -> float:
        """Judge the wait's replies (the last `REPLIES` of its pipeline); returns the seconds
        it took. Raises `NotDurable` when fewer than required acknowledged."""
        before, answer, after = replies[-REPLIES:]
        seconds = _between(before, after)
        if self.aof:
            local, replicas = int(answer[0]), int(answer[1])
            met = local >= 1 and replicas >= self.replicas
            got = f"local fsync {local}/1, replicas {replicas}/{self.replicas}"
        else:
            replicas = int(answer)
            met = replicas >= self.replicas
            got = f"{replicas} of {self.replicas} replicas"
        outcome = WaitOutcome.ACKNOWLEDGED if met else WaitOutcome.TIMED_OUT
        if self.observe is not None:
            self.observe(stage, outcome, seconds)
        if not met:
            raise NotDurable(
                f"{self.command.value} timed out after {self.timeout_ms} ms ({stage}): {got} "
                "acknowledged the writes (CHARGER_REDIS_MIN_REPLICAS)"
            )
        return seconds


def _between(before: Any, after: Any) -> float:
    """Seconds from one TIME reply, (seconds, microseconds), to another; in whole
    microseconds first (a float of the epoch would round them away)."""
    micros = (int(after[0]) - int(before[0])) * 1_000_000 + int(after[1]) - int(before[1])
    return max(micros, 0) / 1_000_000


class ServerCommands(Protocol):
    """What the start-up check needs of a client."""

    def execute_command(self, *args: Any, **options: Any) -> Awaitable[Any]: ...

    def waitaof(
        self, num_local: int, num_replicas: int, timeout: int, **kwargs: Any
    ) -> Awaitable[Any]: ...


async def check_server(client: ServerCommands, durability: Durability, where: str) -> None:
    """At start: can the server at `where` do what `durability` asks? One line if not."""
    if not durability.aof:
        return
    # One name with its subcommand: redis-py then leaves the reply as it is ([None] when
    # the server has no such command) instead of parsing it as a COMMAND listing.
    info = await client.execute_command("COMMAND INFO", "WAITAOF")
    if not info or info[0] is None:
        raise DurabilityConfigError(
            f"CHARGER_REDIS_WAIT_AOF needs WAITAOF (Redis 7.2+, Valkey 8+): "
            f"the server at {where} does not know it"
        )
    try:
        # No writes of this connection yet: answers at once, unless AOF is off.
        await client.waitaof(1, 0, durability.timeout_ms)
    except ResponseError as exc:
        raise DurabilityConfigError(
            f"CHARGER_REDIS_WAIT_AOF needs appendonly yes on the primary at {where}: {exc}"
        ) from None
