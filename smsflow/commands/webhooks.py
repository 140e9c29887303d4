"""``smsflow webhooks``: serve Twilio inbound/status callbacks and link redirects."""

from __future__ import annotations

import asyncio
import logging


def register(sub) -> None:
    p = sub.add_parser("webhooks", help="serve Twilio webhooks and tracked-link redirects")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=None, help="default SMSFLOW_WEBHOOK_PORT (8080)")
    p.set_defaults(func=run)


def run(args) -> int:
    from smsflow.webhooks.server import serve
    from smsflow.streams.settings import Settings

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(Settings.from_env(), args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0
