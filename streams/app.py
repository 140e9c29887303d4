"""The Faust app factory: settings -> app with topics, tables and agents wired.

Start-up tuning (measured): Faust's defaults keep a new worker waiting ~30 s for the
consumer-group join. Short session/rebalance timeouts with a 1 s heartbeat, together with
the broker's ``group.initial.rebalance.delay.ms=0``, bring that to a few seconds. The same
timeouts make the group evict a hung worker within ``broker_session_timeout``.
"""

from __future__ import annotations

import importlib
import os
import logging

import faust

from smsflow.clock import Clock, clock_from_env
from smsflow.core.flows.loader import load_dir
from smsflow.streams import codecs, tables, ticker, topics, web
from smsflow.streams.runtime import Runtime
from smsflow.streams.settings import Settings

AGENT_MODULES = ["smsflow.agents.customers", "smsflow.agents.products", "smsflow.agents.phones", "smsflow.agents.dispatcher",
                 "smsflow.agents.receipts"]

# Faust logs every publish at DEBUG: never let a stray DEBUG level cost throughput.
for noisy in ("faust.topics", "faust.transport", "aiokafka", "faust.tables"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def faust_settings(settings: Settings) -> dict:
    return dict(
        broker=settings.broker,
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        processing_guarantee=settings.processing_guarantee,
        autodiscover=False,
        web_enabled=True,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=5,
        producer_threaded=os.environ.get("SMSFLOW_PRODUCER_THREADED", "0") == "1",
        producer_max_batch_size=256 * 1024,
        stream_buffer_maxsize=16_384,
        table_standby_replicas=1,
        table_key_index_size=100_000,
        recovery_buffer_size=5_000,
        logging_config=None,
    )


class ConfigError(RuntimeError):
    """Flows or policy could not be loaded; the message names file and line."""


def load_engine(settings: Settings):
    """The flow engine over every flow in ``flows_dir`` (refuse to start on bad flows)."""
    from smsflow.core.flows.engine import FlowEngine

    result = load_dir(settings.flows_dir)
    if result.errors:
        raise ConfigError("invalid flows:\n" + "\n".join(str(e) for e in result.errors))
    return FlowEngine(result.flows, link_base_url=settings.public_url,
                      link_secret=settings.link_secret)


def load_policy_file(settings: Settings):
    """The global policy (quiet hours, state rules, caps, senders); built-in defaults if
    the configured file does not exist."""
    from smsflow.core.policy import PolicyError, default_policy, load_policy

    if not settings.policy_file.exists():
        return default_policy()
    try:
        return load_policy(settings.policy_file)
    except PolicyError as exc:
        raise ConfigError(f"invalid policy: {exc}") from exc


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> faust.App:
    settings = settings or Settings.from_env()
    clock = clock or clock_from_env(settings.clock_speed, settings.clock_origin, settings.clock_epoch)
    codecs.register()
    app = faust.App(settings.app_id, **faust_settings(settings))
    rt = Runtime(app=app, settings=settings, clock=clock,
                 topics=topics.declare(app, settings), tables=tables.declare(app, settings))
    app.smsflow_runtime = rt
    rt.extras["engine"] = load_engine(settings)
    rt.extras["policy"] = load_policy_file(settings)
    rt.extras["double_opt_in_sources"] = settings.double_opt_in_sources
    customer_ticker = ticker.Ticker(rt, "customer_timers", "customer-timers")
    phone_ticker = ticker.Ticker(rt, "phone_timers", "phone-timers")
    rt.extras["customer_ticker"] = customer_ticker
    rt.extras["phone_ticker"] = phone_ticker
    ticker.register(rt, [customer_ticker, phone_ticker])
    for name in AGENT_MODULES:
        importlib.import_module(name).register(rt)
    web.register(rt)
    return app
