"""``smsflow worker``: run one Faust worker (add more processes to scale out)."""

from __future__ import annotations

import logging
import os
import sys

from smsflow.commands._kafka import add_bootstrap_argument, connect, kafka_command


def register(sub) -> None:
    p = sub.add_parser("worker", help="run one smsflow worker (Faust) on the configured broker",
                       description="Run one Faust worker: every agent, RocksDB state in its "
                                   "own data dir, /metrics and health on the web port. Start "
                                   "more processes (each with its own data dir) to scale out.")
    p.add_argument("--web-port", type=int, help="HTTP port for metrics/health (SMSFLOW_WEB_PORT)")
    p.add_argument("--data-dir", help="RocksDB folder; one per worker (SMSFLOW_DATA_DIR)")
    p.add_argument("--loglevel", default=None, help="log level (SMSFLOW_LOG_LEVEL, default info)")
    add_bootstrap_argument(p)
    p.set_defaults(func=run)


@kafka_command("worker")
def run(args) -> int:
    if args.web_port:
        os.environ["SMSFLOW_WEB_PORT"] = str(args.web_port)
    if args.data_dir:
        os.environ["SMSFLOW_DATA_DIR"] = args.data_dir
    # Before Faust is even imported: an unreachable broker or refused credentials end the
    # command with one line within seconds instead of Faust's retry loop.
    settings = connect(args)
    from smsflow.privacy import refusal

    reason = refusal(settings)
    if reason:
        from smsflow.commands._kafka import fail

        return fail("worker", reason)
    from faust.worker import Worker

    from smsflow import logs

    class SmsflowWorker(Worker):  # type: ignore[misc]
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            logs.install(logger, settings.log_format)

    from smsflow.kafka_admin import ensure_topics
    from smsflow.streams.app import ConfigError, create_app

    level = (args.loglevel or settings.log_level).upper()
    logs.setup(level, settings.log_format)
    ensure_topics(settings)
    try:
        app = create_app(settings)
    except ConfigError as exc:  # invalid flows or policy: every problem as file:line
        print(f"smsflow worker: {exc}", file=sys.stderr)
        return 1
    worker = SmsflowWorker(app, loglevel=level, logfile=None, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
