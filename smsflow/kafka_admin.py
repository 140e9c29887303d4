"""Topic administration with confluent-kafka: create smsflow's topics idempotently."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from streams import topics as topic_catalog
from streams.settings import Settings


def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap})


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every smsflow topic that does not exist yet; return the names created."""
    client = admin(settings)
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = []
    for role in topic_catalog.all_roles():
        name = settings.topic(role)
        if name in existing:
            continue
        config = {"cleanup.policy": "compact"} if role in topic_catalog.COMPACTED else {}
        wanted.append(NewTopic(name, num_partitions=settings.partitions,
                               replication_factor=1, config=config))
    if not wanted:
        return []
    created = []
    for name, future in client.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:  # noqa: BLE001
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created


def describe(settings: Settings, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count, for smsflow's topics that exist."""
    md = admin(settings).list_topics(timeout=timeout)
    prefix = settings.topic_prefix
    return {name: len(t.partitions) for name, t in sorted(md.topics.items())
            if name.startswith(prefix) or name.startswith(f"{settings.app_id}-")}
