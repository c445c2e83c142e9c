"""One typed settings object, read from CHARGER_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Worker configuration. Secrets are SecretStr so they never show in logs or reprs."""

    model_config = SettingsConfigDict(env_prefix="CHARGER_", extra="ignore")

    # Empty means "start the embedded broker / Redis" (demo and tests only).
    kafka_bootstrap: str = ""
    redis_url: SecretStr = SecretStr("")
    group_id: str = "charger"
    # Namespace of every Redis key, so several deployments or test runs can share a server.
    redis_prefix: str = "ch"
    client_id: str = "charger"
    # Partitions of the co-partitioned input topics; also the number of Redis key slots.
    # Changing it re-homes accounts, so it is fixed for the life of a deployment.
    partitions: int = Field(8, ge=1, le=4096)
    # Rate plan files: a .yaml/.json file or a directory of them.
    rate_plans_path: str = ""
    # Batch loop: how much one fetch may hold and how long it waits for data.
    batch_max_records: int = Field(2000, ge=1, le=100_000)
    batch_timeout_ms: int = Field(50, ge=1, le=10_000)
    # How long an event id is remembered to catch producer resends (seconds).
    dedupe_ttl_s: int = Field(24 * 3600, ge=60)
    # How long an ended call is remembered, so late duplicates and late starts change nothing.
    call_tombstone_ttl_s: int = Field(24 * 3600, ge=60)
    # How long the group coordinator waits for members to rejoin on a rebalance. The batch
    # in hand finishes in milliseconds, so a short wait keeps failover fast.
    rebalance_timeout_ms: int = Field(2000, ge=500, le=300_000)
    # A worker that dies without leaving keeps its partitions this long: it bounds failover
    # (and so the lateness of cutoffs due meanwhile). 6 s is Kafka's default minimum.
    session_timeout_ms: int = Field(6000, ge=1000, le=300_000)
    # In-call holds: each extension reserves this much talk time ahead (rounded up to the
    # rate's increments) and happens this long before the covered time runs out.
    hold_interval_s: int = Field(10, ge=1, le=3600)
    hold_lead_ms: int = Field(2000, ge=0, le=600_000)
    # A call still open after this long lost its call.ended: the session is closed and
    # what was held is charged.
    max_call_s: int = Field(4 * 3600, ge=60, le=7 * 24 * 3600)
    # Ticker period (0 turns the background ticker off: tests drive it by hand) and the
    # most sessions one slot's tick call handles.
    tick_ms: int = Field(100, ge=0, le=10_000)
    tick_max_sessions: int = Field(5000, ge=1, le=1_000_000)
    # Auto-recharge: how long a request may stay unanswered, and the pause after a decline.
    recharge_timeout_s: int = Field(600, ge=1, le=7 * 24 * 3600)
    recharge_backoff_s: int = Field(3600, ge=0, le=30 * 24 * 3600)
    # Deployment policy for account settings (micro-units of the account's currency).
    recharge_min_threshold_micros: int = Field(10_000_000, ge=0)
    recharge_min_amount_micros: int = Field(50_000_000, ge=0)
    # Dependency faults: a failed batch or tick waits min, 2·min, 4·min … up to max before
    # it tries again; a Redis command gives up after the timeout (a hung server must not
    # hold a batch forever).
    retry_backoff_min_ms: int = Field(100, ge=1, le=60_000)
    retry_backoff_max_ms: int = Field(5000, ge=1, le=600_000)
    redis_timeout_ms: int = Field(5000, ge=100, le=120_000)
    web_port: int = Field(6066, ge=0, le=65535)
    log_level: str = "INFO"

    def redis_dsn(self) -> str:
        return self.redis_url.get_secret_value()
