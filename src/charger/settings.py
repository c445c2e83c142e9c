"""One typed settings object, read from CHARGER_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from charger.charging.records import CurrencyPolicy, RechargePolicy

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# URL schemes that turn on Redis TLS, and those that say the URL names a Redis Cluster.
TLS_SCHEMES = ("rediss://", "rediss+cluster://")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
# A bearer token shorter than this is guessable: refused at start.
MIN_API_TOKEN_CHARS = 16
DATABASE_SCHEMES = ("postgresql://", "postgres://")


def _set_needlessly(given: Mapping[str, object], why_unused: str) -> list[str]:
    """One problem per setting in `given` that has a value though nothing would use it."""
    return [f"{name} is set but {why_unused}" for name, value in given.items() if value]


def sentinel_addresses(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (an IPv6 host in brackets) as pairs; ValueError names the bad one."""
    out: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"CHARGER_REDIS_SENTINELS: {item!r} is not host:port")
        out.append((host, int(port)))
    if not out:
        raise ValueError("CHARGER_REDIS_SENTINELS names no Sentinel")
    return out


class Settings(BaseSettings):
    """Worker configuration. Secrets are SecretStr so they never show in logs or reprs."""

    # Validation errors echo their input by default: that input holds the secrets.
    model_config = SettingsConfigDict(
        env_prefix="CHARGER_", extra="ignore", hide_input_in_errors=True
    )

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
    # How long the broker may hold a fetch request open waiting for new records. Short, so
    # a record waits little in the broker; the batch loop still takes what has piled up.
    fetch_wait_ms: int = Field(10, ge=0, le=10_000)
    # The producer of everything the worker publishes is idempotent (acks=all always): a
    # retried send can neither duplicate nor reorder records within a partition. Off only
    # for a broker without idempotent producers (the embedded development broker).
    producer_idempotence: bool = True
    # While no records come, how often the worker compares Redis's applied-offset
    # watermarks with its positions, to apply again what a forgetful Redis lost (seconds).
    watermark_check_s: float = Field(1.0, gt=0, le=3600)
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
    # The same per currency, as JSON: {"UAH": {"min_threshold_micros": 400000000,
    # "min_amount_micros": 2000000000}}; a currency not named takes the two above.
    recharge_policies: dict[str, dict[str, int]] = Field(default_factory=dict)
    # Dependency faults: a failed batch or tick waits min, 2·min, 4·min … up to max before
    # it tries again; a Redis command gives up after the timeout (a hung server must not
    # hold a batch forever).
    retry_backoff_min_ms: int = Field(100, ge=1, le=60_000)
    retry_backoff_max_ms: int = Field(5000, ge=1, le=600_000)
    redis_timeout_ms: int = Field(5000, ge=100, le=120_000)
    # A worker started while Redis is down or still loading waits this long for it (then
    # exits, and its supervisor restarts it). Wrong credentials fail at once.
    redis_startup_wait_s: int = Field(60, ge=0, le=3600)
    web_port: int = Field(6066, ge=0, le=65535)
    log_level: str = "INFO"

    # Redis AUTH (an ACL user, Redis 6+ / Valkey): here or inside CHARGER_REDIS_URL, not both.
    redis_username: str = ""
    redis_password: SecretStr = SecretStr("")
    # Redis TLS: on with this flag or a rediss:// URL. The server's certificate and host
    # name are verified (against the CA file, else the system store) unless verify is off.
    redis_tls: bool = False
    redis_tls_ca_file: str = ""
    redis_tls_cert_file: str = ""
    redis_tls_key_file: str = ""
    redis_tls_verify: bool = True
    # Redis Sentinel: instead of CHARGER_REDIS_URL, the Sentinels ("host:port,host:port")
    # that name the primary of the monitored master. The data nodes take the AUTH and TLS
    # settings above; the Sentinels take the same TLS and their own user and password.
    redis_sentinels: str = ""
    redis_sentinel_master: str = ""
    redis_sentinel_username: str = ""
    redis_sentinel_password: SecretStr = SecretStr("")
    # Durability of applied batches: before a batch's offsets are committed or its outputs
    # published, this many replicas must have its writes (WAIT), or with WAIT_AOF have
    # fsynced them to their append-only files, the primary's own included (WAITAOF).
    redis_min_replicas: int = Field(0, ge=0, le=64)
    redis_wait_aof: bool = False
    redis_wait_timeout_ms: int = Field(1000, ge=1, le=600_000)
    # Redis Cluster: on with this flag or a redis+cluster:// / rediss+cluster:// URL (one
    # node of the cluster; the client learns the others). Every command then goes to the
    # primary serving its key's hash tag (charger.store.client).
    redis_cluster: bool = False
    # Kafka: every worker-side client (charging consumer, producer, plan reader, Faust's
    # own clients) uses these; see charger.connections.
    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_file: str = ""
    kafka_ssl_cert_file: str = ""
    kafka_ssl_key_file: str = ""
    kafka_ssl_verify: bool = True
    # `charger api`: where it listens, and the bearer tokens /v1 accepts, comma-separated
    # (several, so a new one can be rolled out before the old one is withdrawn).
    api_host: str = "0.0.0.0"
    api_port: int = Field(8080, ge=0, le=65535)
    api_tokens: SecretStr = SecretStr("")
    # PostgreSQL, where `charger ledger-sink` stores the ledger and statements are read
    # from: a libpq URL (postgresql://user:password@host:port/db?sslmode=…), a secret.
    database_url: SecretStr = SecretStr("")
    # A connect or a statement gives up after this (a stuck lock must not hold a batch).
    database_timeout_ms: int = Field(5000, ge=100, le=600_000)
    # The most connections one statement reader (an API process) opens.
    database_pool_size: int = Field(10, ge=1, le=1000)
    # The ledger sink's consumer group on billing.ledger, and the port of its /metrics.
    sink_group_id: str = "charger-ledger-sink"
    sink_web_port: int = Field(6067, ge=0, le=65535)

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _security_combinations(self) -> Settings:
        # Every inconsistency at once, so one restart fixes them all. Messages name the
        # variables, never their values.
        problems = self._redis_problems() + self._sentinel_problems() + self._cluster_problems()
        problems += self._kafka_problems() + self._durability_problems()
        problems += self._policy_problems() + self._database_problems() + self._api_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _redis_problems(self) -> list[str]:
        out: list[str] = []
        url = urlsplit(self.redis_dsn()) if self.redis_dsn() else None
        if url is not None and url.password and self.redis_password.get_secret_value():
            out.append("the Redis password is both in CHARGER_REDIS_URL and CHARGER_REDIS_PASSWORD")
        if url is not None and url.username and self.redis_username:
            out.append("the Redis user is both in CHARGER_REDIS_URL and CHARGER_REDIS_USERNAME")
        has_password = bool(self.redis_password.get_secret_value() or (url and url.password))
        if (self.redis_username or (url and url.username)) and not has_password:
            out.append("a Redis user needs a password (CHARGER_REDIS_PASSWORD)")
        if self.redis_tls and url is not None and url.scheme == "unix":
            out.append("CHARGER_REDIS_TLS needs a redis:// or rediss:// URL, not unix://")
        if not self.redis_tls_enabled():
            files = {
                "CHARGER_REDIS_TLS_CA_FILE": self.redis_tls_ca_file,
                "CHARGER_REDIS_TLS_CERT_FILE": self.redis_tls_cert_file,
                "CHARGER_REDIS_TLS_KEY_FILE": self.redis_tls_key_file,
            }
            out += _set_needlessly(
                files, "Redis TLS is off (set CHARGER_REDIS_TLS=true or use a rediss:// URL)"
            )
        if self.redis_tls_key_file and not self.redis_tls_cert_file:
            out.append("CHARGER_REDIS_TLS_KEY_FILE needs CHARGER_REDIS_TLS_CERT_FILE")
        return out

    def _sentinel_problems(self) -> list[str]:
        out: list[str] = []
        given = {
            "CHARGER_REDIS_SENTINELS": bool(self.redis_sentinels.strip()),
            "CHARGER_REDIS_SENTINEL_MASTER": bool(self.redis_sentinel_master.strip()),
        }
        if any(given.values()) and not all(given.values()):
            missing = next(name for name, value in given.items() if not value)
            out.append(f"Redis Sentinel needs both CHARGER_REDIS_SENTINELS and {missing}")
        if given["CHARGER_REDIS_SENTINELS"]:
            try:
                sentinel_addresses(self.redis_sentinels)
            except ValueError as exc:
                out.append(str(exc))
            if self.redis_dsn():
                out.append(
                    "CHARGER_REDIS_URL and CHARGER_REDIS_SENTINELS both say where Redis is: "
                    "set one (the Sentinels name the primary)"
                )
        else:
            sentinel_auth = {
                "CHARGER_REDIS_SENTINEL_USERNAME": self.redis_sentinel_username,
                "CHARGER_REDIS_SENTINEL_PASSWORD": self.redis_sentinel_password.get_secret_value(),
            }
            out += _set_needlessly(sentinel_auth, "no CHARGER_REDIS_SENTINELS are set")
        if self.redis_sentinel_username and not self.redis_sentinel_password.get_secret_value():
            out.append("a Sentinel user needs a password (CHARGER_REDIS_SENTINEL_PASSWORD)")
        return out

    def _durability_problems(self) -> list[str]:
        out: list[str] = []
        if not self.waits_for_durability():
            # Judged by value, as the SASL mechanism is: dumped settings carry the default.
            timeout = {"CHARGER_REDIS_WAIT_TIMEOUT_MS": self.redis_wait_timeout_ms != 1000}
            out += _set_needlessly(
                timeout, "nothing waits (CHARGER_REDIS_MIN_REPLICAS=0, CHARGER_REDIS_WAIT_AOF off)"
            )
        elif self.redis_wait_timeout_ms >= self.redis_timeout_ms:
            out.append(
                "CHARGER_REDIS_WAIT_TIMEOUT_MS must be below CHARGER_REDIS_TIMEOUT_MS "
                "(the client would give up on the wait first)"
            )
        return out

    def _cluster_problems(self) -> list[str]:
        if not self.redis_cluster_enabled():
            return []
        out: list[str] = []
        if self.redis_sentinels.strip():
            out.append(
                "Redis Cluster and CHARGER_REDIS_SENTINELS exclude each other: a cluster "
                "promotes its own replicas (name one node in CHARGER_REDIS_URL)"
            )
        if self.waits_for_durability():
            # WAIT counts the writes of its own connection, and a cluster batch writes
            # through one connection per node: a wait per node is not built yet.
            out.append(
                "CHARGER_REDIS_MIN_REPLICAS and CHARGER_REDIS_WAIT_AOF are not supported on "
                "a Redis Cluster yet (the watermark check recovers what a promoted replica lost)"
            )
        if not self.redis_dsn():
            return out
        url = urlsplit(self.redis_dsn())
        if url.scheme == "unix":
            out.append("Redis Cluster (CHARGER_REDIS_CLUSTER) needs a redis:// URL, not unix://")
        elif url.path.strip("/") not in ("", "0"):
            out.append("Redis Cluster has database 0 only: CHARGER_REDIS_URL names another")
        return out

    def _policy_problems(self) -> list[str]:
        out: list[str] = []
        wanted = {"min_threshold_micros", "min_amount_micros"}
        for currency, rule in self.recharge_policies.items():
            if not (len(currency) == 3 and currency.isascii() and currency.isupper()):
                out.append(f"CHARGER_RECHARGE_POLICIES: {currency!r} is not a currency code")
            elif set(rule) != wanted or any(value < 0 for value in rule.values()):
                out.append(
                    f"CHARGER_RECHARGE_POLICIES: {currency} needs exactly min_threshold_micros "
                    "and min_amount_micros, neither negative"
                )
        return out

    def _api_problems(self) -> list[str]:
        if any(len(token) < MIN_API_TOKEN_CHARS for token in self.api_token_list()):
            return [
                f"CHARGER_API_TOKENS: every token must be at least {MIN_API_TOKEN_CHARS} "
                "characters (a random string, e.g. `openssl rand -hex 32`)"
            ]
        return []

    def _database_problems(self) -> list[str]:
        url = self.database_dsn()
        if url and not url.lower().startswith(DATABASE_SCHEMES):
            # Named without its value: the URL holds the password.
            return ["CHARGER_DATABASE_URL must be a postgresql:// URL"]
        return []

    def _kafka_problems(self) -> list[str]:
        out: list[str] = []
        proto = self.kafka_security_protocol
        if proto.startswith("SASL_"):
            if not self.kafka_sasl_username or not self.kafka_sasl_password.get_secret_value():
                out.append(
                    f"CHARGER_KAFKA_SECURITY_PROTOCOL={proto} with SASL mechanism "
                    f"{self.kafka_sasl_mechanism} needs CHARGER_KAFKA_SASL_USERNAME and "
                    "CHARGER_KAFKA_SASL_PASSWORD"
                )
        else:
            sasl = {
                "CHARGER_KAFKA_SASL_USERNAME": bool(self.kafka_sasl_username),
                "CHARGER_KAFKA_SASL_PASSWORD": bool(self.kafka_sasl_password.get_secret_value()),
                # Judged by value, not by "was given": settings copied field by field
                # (model_dump) carry the default mechanism explicitly.
                "CHARGER_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism != "PLAIN",
            }
            out += _set_needlessly(
                sasl,
                f"CHARGER_KAFKA_SECURITY_PROTOCOL={proto} uses no SASL "
                "(SASL_SSL or SASL_PLAINTEXT)",
            )
        if not proto.endswith("SSL"):
            files = {
                "CHARGER_KAFKA_SSL_CA_FILE": self.kafka_ssl_ca_file,
                "CHARGER_KAFKA_SSL_CERT_FILE": self.kafka_ssl_cert_file,
                "CHARGER_KAFKA_SSL_KEY_FILE": self.kafka_ssl_key_file,
            }
            out += _set_needlessly(
                files, f"CHARGER_KAFKA_SECURITY_PROTOCOL={proto} uses no TLS (SSL or SASL_SSL)"
            )
        if self.kafka_ssl_key_file and not self.kafka_ssl_cert_file:
            out.append("CHARGER_KAFKA_SSL_KEY_FILE needs CHARGER_KAFKA_SSL_CERT_FILE")
        return out

    def recharge_policy(self) -> RechargePolicy:
        """The auto-recharge policy the planner checks account settings against."""
        return RechargePolicy(
            self.recharge_min_threshold_micros,
            self.recharge_min_amount_micros,
            {
                currency: CurrencyPolicy(rule["min_threshold_micros"], rule["min_amount_micros"])
                for currency, rule in self.recharge_policies.items()
            },
        )

    def api_token_list(self) -> list[str]:
        """The bearer tokens `charger api` accepts (spaces around commas ignored)."""
        text = self.api_tokens.get_secret_value()
        return [token.strip() for token in text.split(",") if token.strip()]

    def redis_dsn(self) -> str:
        return self.redis_url.get_secret_value()

    def database_dsn(self) -> str:
        return self.database_url.get_secret_value()

    def redis_given(self) -> bool:
        """True when the settings say where Redis is: a URL or Sentinels."""
        return bool(self.redis_dsn() or self.redis_sentinels.strip())

    def sentinels(self) -> list[tuple[str, int]]:
        """The Sentinels' addresses; empty without CHARGER_REDIS_SENTINELS."""
        return sentinel_addresses(self.redis_sentinels) if self.redis_sentinels.strip() else []

    def waits_for_durability(self) -> bool:
        """True when an applied batch waits for replicas or fsyncs before it counts."""
        return self.redis_min_replicas > 0 or self.redis_wait_aof

    def redis_tls_enabled(self) -> bool:
        return self.redis_tls or self.redis_dsn().lower().startswith(TLS_SCHEMES)

    def redis_cluster_enabled(self) -> bool:
        return self.redis_cluster or self.redis_dsn().lower().startswith(CLUSTER_SCHEMES)
