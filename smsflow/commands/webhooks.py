"""``smsflow webhooks``: serve Twilio inbound/status callbacks and link redirects.

Binds 127.0.0.1 unless told otherwise (``--host`` or ``SMSFLOW_WEBHOOK_HOST``): the
server is meant to sit behind a TLS-terminating proxy. Refuses to start (exit code 2,
one line on stderr) against the real Twilio with a default secret, or on a state folder
another replica holds. SIGTERM and SIGINT stop it cleanly (requests in flight finish,
the journal is flushed).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from smsflow.commands._kafka import add_bootstrap_argument, settings_from_args


def register(sub) -> None:
    p = sub.add_parser("webhooks", help="serve Twilio webhooks and tracked-link redirects")
    p.add_argument("--host", default=None,
                   help="bind address (default SMSFLOW_WEBHOOK_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default SMSFLOW_WEBHOOK_PORT (8080)")
    add_bootstrap_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from smsflow.kafka_config import KafkaConfigError, check
    from smsflow.privacy import refusal
    from smsflow.webhooks.server import StateInUse, serve
    from smsflow.webhooks.settings import WebhookSettings

    try:
        settings = settings_from_args(args)
        check(settings)  # no reachability check: the server spools while Kafka is down
        ws = WebhookSettings.from_env(settings)
    except (ValueError, KafkaConfigError) as exc:
        print(f"smsflow webhooks: {exc}", file=sys.stderr)
        return 2
    reason = refusal(settings)
    if reason:
        print(f"smsflow webhooks: {reason}", file=sys.stderr)
        return 2
    from smsflow import logs

    logs.setup(settings.log_level, settings.log_format)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, ws, args.host, args.port, stop)

    try:
        asyncio.run(main())
    except StateInUse as exc:
        print(f"smsflow webhooks: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port is taken, the folder is not writable, ...
        print(f"smsflow webhooks: {exc}", file=sys.stderr)
        return 1
    return 0
