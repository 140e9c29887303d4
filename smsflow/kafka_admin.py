"""Topic administration with confluent-kafka: create smsflow's topics idempotently, and
check quickly that the configured Kafka can be reached (CLI commands fail with one line)."""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from smsflow.kafka_config import (KafkaConfigError, confluent_config, describe as describe_kafka,
                                  replication_factor, topic_config)
from smsflow.streams import tables as table_catalog
from smsflow.streams import topics as topic_catalog
from smsflow.streams.settings import Settings


class KafkaUnavailable(RuntimeError):
    """Kafka cannot be reached, or refuses our credentials. ``str()`` is one line for users."""


def quiet_logger() -> logging.Logger:
    """A logger that swallows librdkafka's own log lines (used by CLI commands: their user
    sees one clear error instead of a flood of connection retries)."""
    log = logging.getLogger("smsflow.librdkafka")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def wanted_topics(settings: Settings) -> dict[str, tuple[int, dict]]:
    """Every topic a worker needs -> (partitions, config): smsflow's topics, the table
    changelogs and Faust's leader topic. Creating them all before the worker joins its
    group avoids a race on a fresh broker where a changelog is seen with 0 partitions.
    Each gets ``min.insync.replicas`` = ``SMSFLOW_TOPIC_MIN_INSYNC``."""
    durability = topic_config(settings)
    compact = {"cleanup.policy": "compact", **durability}
    wanted = {}
    for role in topic_catalog.all_roles():
        wanted[settings.topic(role)] = (settings.partitions,
                                        compact if role in topic_catalog.COMPACTED else dict(durability))
    for table in table_catalog.TABLES:
        wanted[f"{settings.app_id}-{table}-changelog"] = (settings.partitions, compact)
    wanted[f"{settings.app_id}-__assignor-__leader"] = (1, dict(durability))
    return wanted


def admin(settings: Settings, quiet: bool = False) -> AdminClient:
    extra = {"logger": quiet_logger()} if quiet else {}
    return AdminClient(confluent_config(settings, **extra))


def ensure_topics(settings: Settings, timeout: float = 30.0, quiet: bool = False) -> list[str]:
    """Create every smsflow topic that does not exist yet (replication factor
    ``SMSFLOW_TOPIC_REPLICATION``); return the names created. Existing topics are left as
    they are."""
    client = admin(settings, quiet)
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(name, num_partitions=partitions,
                       replication_factor=replication_factor(settings), config=config)
              for name, (partitions, config) in wanted_topics(settings).items()
              if name not in existing]
    created = []
    if wanted:
        for name, future in client.create_topics(wanted, operation_timeout=timeout).items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    _wait_visible(client, set(wanted_topics(settings)), timeout)
    return created


def _wait_visible(client: AdminClient, names: set[str], timeout: float) -> None:
    """Wait until the broker's metadata shows every topic with its partitions."""
    deadline = time.monotonic() + timeout
    while True:
        topics = client.list_topics(timeout=timeout).topics
        missing = [n for n in names if n not in topics or not topics[n].partitions]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not visible after {timeout:.0f}s: {', '.join(sorted(missing))}")
        time.sleep(0.2)


def describe(settings: Settings, timeout: float = 10.0, quiet: bool = False) -> dict[str, int]:
    """Topic name -> partition count, for smsflow's topics that exist."""
    md = admin(settings, quiet).list_topics(timeout=timeout)
    prefix = settings.topic_prefix
    return {name: len(t.partitions) for name, t in sorted(md.topics.items())
            if name.startswith(prefix) or name.startswith(f"{settings.app_id}-")}


# Errors after which waiting longer does not help.
_FATAL = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
          KafkaError._SSL, KafkaError._INVALID_ARG, KafkaError._UNKNOWN_PROTOCOL}


def check_reachable(settings: Settings, timeout: float = 5.0) -> None:
    """Return when a metadata request to the configured Kafka succeeds; otherwise raise
    :class:`KafkaUnavailable` with one line saying why, within about ``timeout`` seconds
    (sooner when every broker refuses the connection or rejects the credentials).
    :class:`~smsflow.kafka_config.KafkaConfigError` for inconsistent security settings."""
    errors: list[KafkaError] = []
    conf = confluent_config(settings, logger=quiet_logger(), error_cb=errors.append, **{
        "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
        "reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 500})
    try:
        client = AdminClient(conf)
    except KafkaException as exc:  # bad property values, e.g. an unreadable key file
        raise KafkaConfigError(exc.args[0].str()) from None
    started = time.monotonic()
    deadline = started + timeout
    all_down_since: float | None = None
    while True:
        try:
            if client.list_topics(timeout=min(0.5, max(0.1, deadline - time.monotonic()))).brokers:
                return
        except KafkaException as exc:
            errors.append(exc.args[0])
        client.poll(0)  # serves error_cb
        now = time.monotonic()
        fatal = [e for e in errors if e.code() in _FATAL]
        if fatal:
            raise KafkaUnavailable(_unavailable(settings, _reason(fatal[-1])))
        if any(e.code() == KafkaError._ALL_BROKERS_DOWN for e in errors):
            all_down_since = all_down_since or now
        # Every broker refused (or could not be resolved) for 1.5 s: not worth the full wait.
        if now >= deadline or (all_down_since is not None and now - all_down_since >= 1.5):
            specific = [e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN
                        and "Failed to get metadata" not in e.str()]
            reason = _reason(specific[-1]) if specific else \
                f"no answer within {now - started:.0f}s"
            if settings.kafka_security_protocol.upper() == "PLAINTEXT" and not specific or \
                    "Broken pipe" in reason or "Disconnected" in reason:
                reason += " (does this listener need TLS or SASL? SMSFLOW_KAFKA_SECURITY_PROTOCOL)"
            raise KafkaUnavailable(_unavailable(settings, reason))


def _unavailable(settings: Settings, reason: str) -> str:
    return f"cannot reach Kafka at {describe_kafka(settings)}: {reason}"


def _reason(error: KafkaError) -> str:
    """librdkafka's message without its ``host:port/bootstrap:`` prefix and state suffix."""
    text = error.str()
    head, sep, rest = text.partition(": ")
    if sep and "/" in head:
        text = rest
    text = text.split(" (after ")[0].strip()
    if "Invalid response size 1213486160" in text:  # b"HTTP" read as a Kafka frame size
        return "that address answers HTTP, not the Kafka protocol (wrong port?)"
    return text
