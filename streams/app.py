"""The Faust app factory: settings -> app with topics, tables, lanes and agents wired.

Faust runs the consumer group (membership, assignor with co-partitioning and standbys),
table assignment and recovery, the web server and the timers. smsflow plugs into it at
its documented extension points: a transport (``smsflow://``, ``streams/consumer.py``:
batch delivery, own positions and commits) and a store (``smsflow-rocksdb://``,
``streams/store.py``: shared memory budget, write batches, bulk restore). Agents are
lanes (``streams/lanes.py``) fed whole batches; every batch goes through the one commit
protocol (``streams/commit.py``).

Start-up tuning (measured): Faust's defaults keep a new worker waiting ~30 s for the
consumer-group join. Short session/rebalance timeouts with a 1 s heartbeat, together with
the broker's ``group.initial.rebalance.delay.ms=0``, bring that to a few seconds. The same
timeouts make the group evict a hung worker within ``broker_session_timeout``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import faust
from faust.stores import STORES
from faust.transport.drivers import TRANSPORTS

from smsflow.clock import Clock, clock_from_env
from smsflow.core.flows.loader import load_dir
from smsflow.kafka_config import confluent_config, faust_credentials
from smsflow.streams import tables as table_catalog
from smsflow.streams import ticker, web
from smsflow.streams.producer import KafkaProducer
from smsflow.streams.runtime import Runtime
from smsflow.streams.settings import Settings, broker_host_port
from smsflow.streams.store import BulkRestorer, RocksTableStore, SharedBudget

AGENT_MODULES = ["smsflow.agents.customers", "smsflow.agents.products", "smsflow.agents.phones",
                 "smsflow.agents.dispatcher", "smsflow.agents.receipts"]
TIMER_TABLES = [("customer_timers", "customer-timers", "customer_ticker"),
                ("phone_timers", "phone-timers", "phone_ticker"),
                ("dispatch_timers", "dispatch-timers", "dispatch_ticker")]

# The entry points in pyproject.toml register these too; this covers a source checkout
# that was not reinstalled.
TRANSPORTS.aliases.setdefault("smsflow", "smsflow.streams.consumer:Transport")
STORES.aliases.setdefault("smsflow-rocksdb", "smsflow.streams.store:Store")

# Faust logs every publish at DEBUG: never let a stray DEBUG level cost throughput.
for noisy in ("faust.topics", "faust.transport", "aiokafka", "faust.tables"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def faust_settings(settings: Settings) -> dict[str, Any]:
    return dict(
        broker=[f"smsflow://{hp}" for hp in broker_host_port(settings.broker).split(",")],
        store="smsflow-rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        autodiscover=False,
        web_enabled=True,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        # no table, router, graph or stats views: no personal data on the web port
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        broker_commit_every=None,
        broker_commit_interval=settings.commit_interval,
        broker_max_poll_records=5000,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=True,
        table_standby_replicas=settings.standby_replicas,
        topic_replication_factor=settings.topic_replication,
        broker_credentials=faust_credentials(settings),
        recovery_buffer_size=10_000,
        logging_config=None,
    )


class ConfigError(RuntimeError):
    """Flows or policy could not be loaded; the message names file and line."""


def load_engine(settings: Settings) -> Any:
    """The flow engine over every flow in ``flows_dir`` (refuse to start on bad flows)."""
    from smsflow.core.flows.engine import FlowEngine

    result = load_dir(settings.flows_dir)
    if result.errors:
        raise ConfigError("invalid flows:\n" + "\n".join(str(e) for e in result.errors))
    return FlowEngine(result.flows, link_base_url=settings.public_url,
                      link_secret=settings.link_secret)


def load_policy_file(settings: Settings) -> Any:
    """The global policy (quiet hours, state rules, caps, senders). A missing file is an
    error unless ``SMSFLOW_POLICY=defaults`` asks for the built-in defaults."""
    from smsflow.core.policy import PolicyError, default_policy, load_policy

    if str(settings.policy_file) == "defaults":
        return default_policy()
    if not settings.policy_file.exists():
        raise ConfigError(f"policy file {settings.policy_file} does not exist (set "
                          "SMSFLOW_POLICY to a policy file, or to 'defaults' for the "
                          "built-in defaults)")
    try:
        return load_policy(settings.policy_file)
    except PolicyError as exc:
        raise ConfigError(f"invalid policy: {exc}") from exc


def kafka_client_config(settings: Settings) -> dict[str, Any]:
    """confluent-kafka settings for the broker (TLS/SASL included when set)."""
    result: dict[str, Any] = confluent_config(settings)
    return result


def create_runtime(settings: Settings, clock: Clock, producer: Any) -> Runtime:
    """The runtime with engine, policy and agents, without Faust (tests use this too)."""
    rt = Runtime(settings=settings, clock=clock, producer=producer)
    rt.extras["engine"] = load_engine(settings)
    rt.extras["policy"] = load_policy_file(settings)
    return rt


def add_agents(rt: Runtime) -> None:
    for name in AGENT_MODULES:
        rt.add_agent(importlib.import_module(name).build(rt))


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> faust.App:
    settings = settings or Settings.from_env()
    clock = clock or clock_from_env(settings.clock_speed, settings.clock_origin, settings.clock_epoch)
    SharedBudget.configure(settings.rocksdb_shared_cache_mb, settings.rocksdb_write_buffers_mb)
    app = faust.App(settings.app_id, **faust_settings(settings))
    client = kafka_client_config(settings)
    rt = create_runtime(settings, clock, KafkaProducer(client))
    rt.app = app
    app.smsflow_runtime = rt
    app.smsflow_restorer = BulkRestorer(client)
    faust_tables = table_catalog.declare(app, settings)
    rt.stores = {name: RocksTableStore(table) for name, table in faust_tables.items()}
    tickers = []
    for table_name, role, extra in TIMER_TABLES:
        rt.extras[extra] = ticker.Ticker(rt, table_name, role)
        tickers.append(rt.extras[extra])
    add_agents(rt)
    for topic_name in rt.source_topics():
        app.topics.add(app.topic(topic_name, partitions=settings.partitions, key_type=bytes,
                                 value_type=bytes, key_serializer="raw", value_serializer="raw"))
    for lane in rt.lanes:
        app.task(_starter(lane))

    async def processed(offsets: Any) -> None:
        await app.consumer.mark_processed(offsets)

    rt.on_processed = processed
    ticker.register(rt, tickers)
    web.register(rt)

    return app


def _starter(lane: Any) -> Any:
    async def start_lane() -> None:
        lane.start()
    start_lane.__name__ = f"start_{lane.agent.name}_lane"
    return start_lane
