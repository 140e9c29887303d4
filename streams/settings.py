"""Worker settings, read from environment variables (documented in the README).

One frozen dataclass, built once at start-up by :func:`Settings.from_env`, so every module
sees the same configuration and tests can build one explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smsflow.core.events import Limits

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw not in (None, "") else default
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    return int(_env_float(name, default))


def broker_host_port(url: str) -> str:
    """``kafka://h:p`` or ``h:p`` (comma-separated allowed) -> ``h:p`` for plain clients."""
    return ",".join(part.split("://", 1)[-1] for part in url.split(","))


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    app_id: str = "smsflow"
    topic_prefix: str = "smsflow."
    partitions: int = 8
    data_dir: Path = REPO_ROOT / ".smsflow" / "data"
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    webhook_port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    flows_dir: Path = REPO_ROOT / "flows"
    policy_file: Path = REPO_ROOT / "deploy" / "policy.yaml"
    default_region: str = "US"
    link_secret: str = "change-me"
    twilio_account_sid: str = "AC" + "0" * 32  # the sandbox default
    twilio_auth_token: str = "sandbox-token"
    twilio_base_url: str | None = "http://127.0.0.1:8088"
    clock_speed: float = 1.0
    clock_origin: float | None = None
    clock_epoch: float | None = None
    tick_interval: float = 0.25
    batch_size: int = 2000
    rocksdb_write_buffer_mb: int = 16
    dedupe_window: int = 256
    log_level: str = "info"
    log_format: str = "text"
    double_opt_in_sources: tuple[str, ...] = ()
    # runtime (commit protocol, lanes, state) -- README "Configuration"
    standby_replicas: int = 0
    commit_interval: float = 1.0
    dispatch_horizon: float = 1.0
    dispatch_lookahead: float = 30.0
    dispatch_max_wait: float = 120.0
    lane_queue_max: int = 20_000
    max_record_bytes: int = 900_000
    max_state_bytes: int = 512 * 1024
    rocksdb_shared_cache_mb: int = 64
    rocksdb_write_buffers_mb: int = 64
    # input limits (smsflow.core.events.Limits) -- README "Security and privacy"
    max_event_bytes: int = 64 * 1024
    max_depth: int = 12
    max_string: int = 4096
    max_items: int = 200
    max_money: float = 1e9
    extra: dict = field(default_factory=dict)
    # --- Kafka security and topic durability (ops; used through smsflow/kafka_config.py) ---
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    topic_replication: int = 1
    topic_min_insync: int = 1

    @property
    def limits(self) -> Limits:
        """The input limits the event decoder enforces."""
        from smsflow.core.events import Limits

        return Limits(max_event_bytes=self.max_event_bytes, max_depth=self.max_depth,
                      max_string=self.max_string, max_items=self.max_items,
                      max_money=self.max_money)

    @property
    def bootstrap(self) -> str:
        return broker_host_port(self.broker)

    def topic(self, role: str) -> str:
        """Full topic name for a role, e.g. ``events`` -> ``smsflow.events``."""
        return f"{self.topic_prefix}{role}"

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls) -> "Settings":
        d = cls()
        sid = os.environ.get("SMSFLOW_TWILIO_ACCOUNT_SID") or os.environ.get("TWILIO_ACCOUNT_SID")
        token = os.environ.get("SMSFLOW_TWILIO_AUTH_TOKEN") or os.environ.get("TWILIO_AUTH_TOKEN")
        # Real Twilio credentials switch the base URL off the sandbox unless one is set.
        base_default = d.twilio_base_url if not (sid and token) else ""
        origin = os.environ.get("SMSFLOW_CLOCK_ORIGIN")
        epoch = os.environ.get("SMSFLOW_CLOCK_EPOCH")
        return cls(
            broker=_env("SMSFLOW_BROKER", d.broker),
            app_id=_env("SMSFLOW_APP_ID", d.app_id),
            topic_prefix=_env("SMSFLOW_TOPIC_PREFIX", d.topic_prefix),
            partitions=_env_int("SMSFLOW_PARTITIONS", d.partitions),
            data_dir=Path(_env("SMSFLOW_DATA_DIR", str(d.data_dir))),
            web_port=_env_int("SMSFLOW_WEB_PORT", d.web_port),
            web_host=_env("SMSFLOW_WEB_HOST", d.web_host),
            webhook_port=_env_int("SMSFLOW_WEBHOOK_PORT", d.webhook_port),
            public_url=_env("SMSFLOW_PUBLIC_URL", d.public_url),
            flows_dir=Path(_env("SMSFLOW_FLOWS_DIR", str(d.flows_dir))),
            policy_file=Path(_env("SMSFLOW_POLICY", str(d.policy_file))),
            default_region=_env("SMSFLOW_DEFAULT_REGION", d.default_region),
            link_secret=_env("SMSFLOW_LINK_SECRET", d.link_secret),
            twilio_account_sid=sid or d.twilio_account_sid,
            twilio_auth_token=token or d.twilio_auth_token,
            twilio_base_url=_env("SMSFLOW_TWILIO_BASE_URL", base_default or "") or None,
            clock_speed=_env_float("SMSFLOW_CLOCK_SPEED", d.clock_speed),
            clock_origin=float(origin) if origin else None,
            clock_epoch=float(epoch) if epoch else None,
            tick_interval=_env_float("SMSFLOW_TICK_INTERVAL", d.tick_interval),
            batch_size=_env_int("SMSFLOW_BATCH_SIZE", d.batch_size),
            rocksdb_write_buffer_mb=_env_int("SMSFLOW_ROCKSDB_WRITE_BUFFER_MB", d.rocksdb_write_buffer_mb),
            dedupe_window=_env_int("SMSFLOW_DEDUPE_WINDOW", d.dedupe_window),
            log_level=_env("SMSFLOW_LOG_LEVEL", d.log_level),
            log_format=_env("SMSFLOW_LOG_FORMAT", d.log_format).lower(),
            double_opt_in_sources=tuple(
                x.strip() for x in _env("SMSFLOW_DOUBLE_OPT_IN_SOURCES", "").split(",") if x.strip()),
            standby_replicas=_env_int("SMSFLOW_STANDBY_REPLICAS", d.standby_replicas),
            commit_interval=_env_float("SMSFLOW_COMMIT_INTERVAL", d.commit_interval),
            dispatch_horizon=_env_float("SMSFLOW_DISPATCH_HORIZON", d.dispatch_horizon),
            dispatch_lookahead=_env_float("SMSFLOW_DISPATCH_LOOKAHEAD", d.dispatch_lookahead),
            dispatch_max_wait=_env_float("SMSFLOW_DISPATCH_MAX_WAIT", d.dispatch_max_wait),
            lane_queue_max=_env_int("SMSFLOW_LANE_QUEUE_MAX", d.lane_queue_max),
            max_record_bytes=_env_int("SMSFLOW_MAX_RECORD_BYTES", d.max_record_bytes),
            max_state_bytes=_env_int("SMSFLOW_MAX_STATE_BYTES", d.max_state_bytes),
            rocksdb_shared_cache_mb=_env_int("SMSFLOW_ROCKSDB_SHARED_CACHE_MB", d.rocksdb_shared_cache_mb),
            rocksdb_write_buffers_mb=_env_int("SMSFLOW_ROCKSDB_WRITE_BUFFERS_MB", d.rocksdb_write_buffers_mb),
            max_event_bytes=_env_int("SMSFLOW_MAX_EVENT_BYTES", d.max_event_bytes),
            max_depth=_env_int("SMSFLOW_MAX_DEPTH", d.max_depth),
            max_string=_env_int("SMSFLOW_MAX_STRING", d.max_string),
            max_items=_env_int("SMSFLOW_MAX_ITEMS", d.max_items),
            max_money=_env_float("SMSFLOW_MAX_MONEY", d.max_money),
            # --- Kafka security and topic durability (ops) ---
            kafka_security_protocol=_env("SMSFLOW_KAFKA_SECURITY_PROTOCOL", d.kafka_security_protocol),
            kafka_sasl_mechanism=os.environ.get("SMSFLOW_KAFKA_SASL_MECHANISM") or None,
            kafka_sasl_username=os.environ.get("SMSFLOW_KAFKA_SASL_USERNAME") or None,
            kafka_sasl_password=os.environ.get("SMSFLOW_KAFKA_SASL_PASSWORD"),
            kafka_ssl_cafile=os.environ.get("SMSFLOW_KAFKA_SSL_CAFILE") or None,
            kafka_ssl_certfile=os.environ.get("SMSFLOW_KAFKA_SSL_CERTFILE") or None,
            kafka_ssl_keyfile=os.environ.get("SMSFLOW_KAFKA_SSL_KEYFILE") or None,
            topic_replication=_env_int("SMSFLOW_TOPIC_REPLICATION", d.topic_replication),
            topic_min_insync=_env_int("SMSFLOW_TOPIC_MIN_INSYNC", d.topic_min_insync),
        )
