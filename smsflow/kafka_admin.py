"""Topic administration with confluent-kafka: create smsflow's topics idempotently."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from smsflow.streams import tables as table_catalog
from smsflow.streams import topics as topic_catalog
from smsflow.streams.settings import Settings


def wanted_topics(settings: Settings) -> dict[str, tuple[int, dict]]:
    """Every topic a worker needs -> (partitions, config): smsflow's topics, the table
    changelogs and Faust's leader topic. Creating them all before the worker joins its
    group avoids a race on a fresh broker where a changelog is seen with 0 partitions."""
    compact = {"cleanup.policy": "compact"}
    wanted = {}
    for role in topic_catalog.all_roles():
        wanted[settings.topic(role)] = (settings.partitions,
                                        compact if role in topic_catalog.COMPACTED else {})
    for table in table_catalog.TABLES:
        wanted[f"{settings.app_id}-{table}-changelog"] = (settings.partitions, compact)
    wanted[f"{settings.app_id}-__assignor-__leader"] = (1, {})
    return wanted


def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap})


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every smsflow topic that does not exist yet; return the names created."""
    client = admin(settings)
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)
              for name, (partitions, config) in wanted_topics(settings).items()
              if name not in existing]
    created = []
    if wanted:
        for name, future in client.create_topics(wanted, operation_timeout=timeout).items():
            try:
                future.result()
                created.append(name)
            except Exception as exc:  # noqa: BLE001
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    _wait_visible(client, set(wanted_topics(settings)), timeout)
    return created


def _wait_visible(client: AdminClient, names: set[str], timeout: float) -> None:
    """Wait until the broker's metadata shows every topic with its partitions."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        topics = client.list_topics(timeout=timeout).topics
        missing = [n for n in names if n not in topics or not topics[n].partitions]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not visible after {timeout:.0f}s: {', '.join(sorted(missing))}")
        time.sleep(0.2)


def describe(settings: Settings, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count, for smsflow's topics that exist."""
    md = admin(settings).list_topics(timeout=timeout)
    prefix = settings.topic_prefix
    return {name: len(t.partitions) for name, t in sorted(md.topics.items())
            if name.startswith(prefix) or name.startswith(f"{settings.app_id}-")}
